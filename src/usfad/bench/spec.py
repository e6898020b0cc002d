"""What the benchmark runs: the model registry and the hyper-parameter presets.

Two families share one interface (``fit(X_train)``, ``decision_function(X)`` = anomaly
score, higher = more anomalous):

- usfad's own detectors ``usflow``, ``usflow_gin`` (the USF with GIN couplings,
  ``flow="usf-gin"``), ``nonusflow`` (the non-USF control: the same stack with affine
  couplings), ``deepsvdd`` and the VAE variants;
- the anchors a user would pick instead, from PyOD (an optional dependency): ``iforest``,
  ``ecod``, ``knn`` and ``pyod_deepsvdd``, always with PyOD's defaults.

Presets (one set of hyper-parameters for every dataset; nothing is tuned per dataset or
on test labels):

- ``default``: the detectors' own defaults (:data:`DEFAULT_SETTINGS` is empty on purpose);
- ``paper``: the authors' settings (:data:`PAPER_SETTINGS`): 4 blocks, MLP conditioners
  256x4, Adam lr 1e-4, batch 64, early stopping with patience 5 on the training loss.

The anchors have no preset: their rows are recorded under ``default`` whatever preset is
asked for, so a ``paper`` run reuses the anchor cells of a ``default`` run.

``overrides`` change single settings for an experiment (``{"usflow.epochs": 5}`` for one
model, ``{"max_steps": 10}`` for every model that has that parameter); they become part of
the preset label recorded with each row (``default+max_steps=10``), so results of
different settings never mix.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import MissingDependencyError

PRESETS = ("default", "paper")
ANCHOR_PRESET = "default"

#: usfad models, preset ``default``: the detectors' own defaults, i.e. exactly what a user
#: gets from ``USFlow()``. Tune them in the detector classes, never here or per dataset.
#: The VAE rows differ only in the prior, the VAE's own switch.
DEFAULT_SETTINGS: dict[str, dict[str, Any]] = {
    "usflow": {},
    "usflow_gin": {"flow": "usf-gin"},
    "nonusflow": {},
    "deepsvdd": {},
    "vaeflow_usf": {"prior": "usf"},
    "vaeflow_affine": {"prior": "affine"},
    "vaeflow_normal": {"prior": "normal"},
    "deepsvddvae": {},
}

# The authors' run (BENCHMARK.md): early stopping on the training loss (no validation
# split), patience 5; the epoch cap only bounds a run whose loss keeps improving.
_PAPER_TRAINING = {
    "epochs": 1000,
    "batch_size": 64,
    "lr": 1e-4,
    "weight_decay": 0.0,
    "validation_fraction": 0.0,
    "patience": 5,
    "max_steps": None,
}
_PAPER_FLOW = {
    "n_blocks": 4,
    "hidden_features": (256, 256, 256, 256),
    "noise": 0.0,
    "base": "gaussian",
    **_PAPER_TRAINING,
}

#: usfad models, preset ``paper``: the authors' settings.
PAPER_SETTINGS: dict[str, dict[str, Any]] = {
    "usflow": _PAPER_FLOW,
    "usflow_gin": {**_PAPER_FLOW, "flow": "usf-gin", "clamp": 1.9},
    "nonusflow": {**_PAPER_FLOW, "clamp": 1.9},
    "deepsvdd": {"hidden_features": (256, 256, 256, 256), "latent_features": 32, **_PAPER_TRAINING},
    "vaeflow_usf": {"prior": "usf", **_PAPER_TRAINING},
    "vaeflow_affine": {"prior": "affine", "clamp": 1.9, **_PAPER_TRAINING},
    "vaeflow_normal": {"prior": "normal", **_PAPER_TRAINING},
    "deepsvddvae": dict(_PAPER_TRAINING),
}

#: PyOD anchors: PyOD's defaults (only the seed and silence are set by the runner).
ANCHOR_SETTINGS: dict[str, dict[str, Any]] = {
    "iforest": {"n_estimators": 100},
    "ecod": {},
    "knn": {"n_neighbors": 5, "method": "largest"},
    "pyod_deepsvdd": {"epochs": 100, "batch_size": 32},
}

# settings that do not change results and so stay out of the preset label
_NOT_IN_LABEL = frozenset({"device", "verbose", "n_jobs"})


@dataclass(frozen=True)
class ModelSpec:
    """One benchmark model: how to import it and how to pass it a seed."""

    name: str
    family: str  #: "usfad" or "pyod"
    target: str  #: "module:Class"
    description: str
    seed_param: str | None = "random_state"
    needs_n_features: bool = False

    def load_class(self) -> type:
        module, _, cls = self.target.partition(":")
        try:
            return getattr(importlib.import_module(module), cls)
        except ImportError as exc:
            if self.family == "pyod":
                raise MissingDependencyError(
                    f"model {self.name!r} needs PyOD, which is not installed ({exc}); "
                    "install it with `pip install usfad[pyod]` or leave the PyOD anchors out of --models"
                ) from None
            raise

    def accepted_params(self) -> set[str]:
        return set(inspect.signature(self.load_class().__init__).parameters) - {"self"}


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("usflow", "usfad", "usfad.detectors.flow:USFlow", "uniformly scaling flow (additive couplings)"),
        ModelSpec("usflow_gin", "usfad", "usfad.detectors.flow:FlowDetector", "uniformly scaling flow (GIN couplings)"),
        ModelSpec("nonusflow", "usfad", "usfad.detectors.flow:NonUSFlow", "non-USF control (affine couplings)"),
        ModelSpec("deepsvdd", "usfad", "usfad.detectors.svdd:DeepSVDD", "Deep SVDD (usfad)"),
        ModelSpec("vaeflow_usf", "usfad", "usfad.detectors.vae:VAEFlow", "VAE with a USF prior (VAE-USFlow)"),
        ModelSpec("vaeflow_affine", "usfad", "usfad.detectors.vae:VAEFlow", "VAE with an affine-flow prior"),
        ModelSpec("vaeflow_normal", "usfad", "usfad.detectors.vae:VAEFlow", "VAE with an N(0, I) prior"),
        ModelSpec("deepsvddvae", "usfad", "usfad.detectors.vae:DeepSVDDVAE", "Deep SVDD-VAE (Zhou et al. 2021)"),
        ModelSpec("iforest", "pyod", "pyod.models.iforest:IForest", "Isolation Forest (PyOD)"),
        ModelSpec("ecod", "pyod", "pyod.models.ecod:ECOD", "ECOD (PyOD)", seed_param=None),
        ModelSpec("knn", "pyod", "pyod.models.knn:KNN", "k nearest neighbours (PyOD)", seed_param=None),
        ModelSpec("pyod_deepsvdd", "pyod", "pyod.models.deep_svdd:DeepSVDD", "Deep SVDD (PyOD)", needs_n_features=True),
    )
}
USFAD_MODELS = tuple(name for name, spec in MODELS.items() if spec.family == "usfad")
ANCHOR_MODELS = tuple(name for name, spec in MODELS.items() if spec.family == "pyod")


def pyod_available() -> bool:
    return importlib.util.find_spec("pyod") is not None


def default_models() -> tuple[str, ...]:
    """Every usfad model, plus the anchors when PyOD is installed."""
    return USFAD_MODELS + (ANCHOR_MODELS if pyod_available() else ())


def get_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODELS)}") from None


def check_preset(preset: str) -> str:
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {PRESETS}, got {preset!r}")
    return preset


def overrides_for(name: str, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """The overrides that apply to model ``name`` (``"name.param"`` keys or bare params it accepts)."""
    if not overrides:
        return {}
    spec = get_spec(name)
    accepted: set[str] | None = None
    chosen: dict[str, Any] = {}
    for key, value in overrides.items():
        target, _, param = key.rpartition(".")
        if target:
            get_spec(target)  # unknown model names are errors, not silent no-ops
            if target == name:
                chosen[param] = value
        else:
            accepted = spec.accepted_params() if accepted is None else accepted
            if param in accepted:
                chosen[param] = value
    return chosen


def model_params(name: str, preset: str = "default", overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The hyper-parameters model ``name`` runs with (without the seed)."""
    spec = get_spec(name)
    check_preset(preset)
    if spec.family == "pyod":
        params = dict(ANCHOR_SETTINGS[name])
    else:
        params = dict((PAPER_SETTINGS if preset == "paper" else DEFAULT_SETTINGS)[name])
    params.update(overrides_for(name, overrides))
    return params


def preset_label(name: str, preset: str = "default", overrides: Mapping[str, Any] | None = None) -> str:
    """The preset recorded with a row: the preset (``default`` for anchors) plus overrides."""
    base = ANCHOR_PRESET if get_spec(name).family == "pyod" else check_preset(preset)
    extra = {k: v for k, v in sorted(overrides_for(name, overrides).items()) if k not in _NOT_IN_LABEL}
    return base + "".join(f"+{k}={_compact(v)}" for k, v in extra.items())


def _compact(value: Any) -> str:
    if isinstance(value, tuple | list):
        return "x".join(str(v) for v in value)
    return str(value)


def check_models(names: Iterable[str], overrides: Mapping[str, Any] | None = None) -> list[str]:
    """Validate model names and overrides up front (raises before any cell runs)."""
    names = list(dict.fromkeys(names))
    if not names:
        raise ValueError("no models given")
    for name in names:
        spec = get_spec(name)
        accepted = spec.accepted_params()  # imports the class: a missing PyOD fails here
        unknown = set(overrides_for(name, overrides)) - accepted
        if unknown:
            raise ValueError(f"model {name!r} has no parameter(s) {sorted(unknown)}; it accepts {sorted(accepted)}")
    for key in overrides or {}:
        target, _, param = key.rpartition(".")
        if not target and not any(param in get_spec(n).accepted_params() for n in names):
            raise ValueError(f"override {key!r} matches a parameter of none of the models {names}")
    for name in names:  # values too: a bad one would fail every cell of the model, one by one
        if get_spec(name).family == "usfad":
            try:
                make_model(name, n_features=2, seed=0, overrides=overrides).check_params()
            except (TypeError, ValueError) as exc:
                raise ValueError(f"model {name!r}: {exc}") from None
    return names


def make_model(
    name: str,
    preset: str = "default",
    *,
    n_features: int,
    seed: int,
    overrides: Mapping[str, Any] | None = None,
) -> Any:
    """A fresh, unfitted estimator for one cell."""
    spec = get_spec(name)
    cls = spec.load_class()
    params = model_params(name, preset, overrides)
    if spec.seed_param is not None:
        params[spec.seed_param] = seed
    if spec.needs_n_features:
        params["n_features"] = n_features
    if name == "pyod_deepsvdd":
        params.setdefault("verbose", 0)
    return cls(**params)


def parse_override(text: str) -> tuple[str, Any]:
    """``"usflow.epochs=5"`` -> ``("usflow.epochs", 5)``; values are JSON, else strings.

    Lists become tuples (``hidden_features=[64,64]``).
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"a parameter override is KEY=VALUE or MODEL.KEY=VALUE, got {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = {"none": None, "true": True, "false": False}.get(raw.strip().lower(), raw.strip())
    if isinstance(value, list):
        value = tuple(value)
    return key, value


def describe_presets() -> str:
    """A human-readable dump of every setting (used by ``usfad bench --show-presets``)."""
    lines = []
    for preset, table in (("default", DEFAULT_SETTINGS), ("paper", PAPER_SETTINGS)):
        for name, params in table.items():
            lines.append(f"{preset:8s} {name:14s} {params}")
    for name, params in ANCHOR_SETTINGS.items():
        lines.append(f"{'(any)':8s} {name:14s} PyOD defaults {params}")
    return "\n".join(lines)
