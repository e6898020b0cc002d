"""Model files carry checksums, and every field load() restores is checked: corruption is a ModelFileError."""

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from usfad import DeepSVDD, DeepSVDDVAE, FlowDetector, NonUSFlow, USFlow, VAEFlow, load
from usfad.cli import main
from usfad.detectors.base import BaseDetector
from usfad.errors import ModelFileError
from usfad.modelfile import CHECKSUM_KEYS, read_model_file, write_model_file

FAST = {"epochs": 1, "hidden_features": (8,), "batch_size": 32}
X = np.random.default_rng(0).normal(size=(60, 3))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    det = USFlow(**FAST, n_blocks=1, mixing="permutation").fit(X)
    return det, det.save(tmp_path_factory.mktemp("integrity") / "m.usfad")


def _contents(path):
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k).clone() for k in f.keys()}, dict(f.metadata())  # noqa: SIM118


def _rewrite(src, dst, *, state=None, params=None, tensors=None, checksum=True):
    """A copy of ``src`` with fields changed; with fresh checksums (``write_model_file``) or none (an old file)."""
    weights, metadata = _contents(src)
    for key, edit in (("state", state), ("params", params)):
        if edit is not None:
            value = json.loads(metadata[key])
            edit(value)
            metadata[key] = json.dumps(value)
    if tensors is not None:
        tensors(weights)
    metadata = {k: v for k, v in metadata.items() if k not in CHECKSUM_KEYS}
    if checksum:
        write_model_file(dst, weights, metadata)
    else:
        save_file(weights, str(dst), metadata=metadata)
    return dst


def test_save_stores_checksums_of_tensors_and_config(saved):
    _, path = saved
    _, metadata = _contents(path)
    assert all(len(metadata[key]) == 64 for key in CHECKSUM_KEYS)


def test_a_flipped_byte_in_a_tensor_is_refused(saved, tmp_path):
    det, path = saved
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x10  # inside the last tensor's bytes
    broken = tmp_path / "flipped.usfad"
    broken.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=r"flipped\.usfad: the SHA-256 of its tensors"):
        load(broken)


def test_an_edited_config_is_refused(saved, tmp_path):
    _, path = saved
    weights, metadata = _contents(path)
    state = json.loads(metadata["state"])
    state["threshold_"] = 1e9
    metadata["state"] = json.dumps(state)
    edited = tmp_path / "edited.usfad"
    save_file(weights, str(edited), metadata=metadata)  # the old checksums kept
    with pytest.raises(ModelFileError, match=r"edited\.usfad: the SHA-256 of its config"):
        load(edited)
    metadata.pop(CHECKSUM_KEYS[1])
    save_file(weights, str(edited), metadata=metadata)
    with pytest.raises(ModelFileError, match="has a checksum but not"):
        load(edited)


def test_a_file_written_before_checksums_still_loads(saved, tmp_path):
    det, path = saved
    old = _rewrite(path, tmp_path / "old.usfad", checksum=False)
    assert not set(CHECKSUM_KEYS) & set(_contents(old)[1])
    np.testing.assert_array_equal(load(old).decision_function(X), det.decision_function(X))


def test_the_checksum_lives_in_the_shared_model_file_layer(tmp_path):
    path = write_model_file(tmp_path / "t.safetensors", {"w": torch.arange(4.0)}, {"format": "f", "version": "1"})
    tensors, _ = read_model_file(path, "f", 1)
    torch.testing.assert_close(tensors["w"], torch.arange(4.0))
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="SHA-256 of its tensors"):
        read_model_file(path, "f", 1)


def _set(key, value):
    return lambda d: d.__setitem__(key, value)


def _permutation_broken(weights):
    name = next(k for k in weights if k.endswith(".order"))
    weights[name] = torch.zeros_like(weights[name])  # index 0 three times


def _inverse_not_matching(weights):
    name = next(k for k in weights if k.endswith(".inverse_order"))
    weights[name] = weights[name].flip(0)  # still a permutation, no longer the inverse


def _nan_weight(weights):
    name = next(k for k in weights if k.endswith(".weight"))
    weights[name][0, 0] = float("nan")


@pytest.mark.parametrize("checksum", [True, False], ids=["fresh-checksum", "no-checksum"])
@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"state": _set("threshold_", "nan")}, r"threshold_ must be a finite number, got 'nan'"),
        ({"state": _set("threshold_", float("nan"))}, r"threshold_ must be a finite number, got nan"),
        ({"state": _set("threshold_", None)}, r"threshold_ must be a finite number, got None"),
        ({"state": _set("n_features_in_", 0)}, r"n_features_in_ must be an integer >= 1, got 0"),
        ({"state": _set("n_features_in_", "3")}, r"n_features_in_ must be an integer >= 1, got '3'"),
        ({"state": _set("n_features_in_", True)}, r"n_features_in_ must be an integer >= 1, got True"),
        ({"state": _set("noise_", -1.0)}, r"noise_ must be a number >= 0"),
        ({"state": _set("predict", 1)}, r"unknown state keys \['predict'\]"),
        ({"state": _set("decision_function", "x")}, r"unknown state keys \['decision_function'\]"),
        ({"state": lambda d: d.pop("threshold_")}, r"state has no threshold_"),
        ({"state": _set("feature_names_in_", ["a"])}, r"feature_names_in_ must be a list of 3 strings"),
        ({"params": _set("epochs", 1.5)}, r"epochs must be an integer >= 1 or 'auto', got 1.5"),
        ({"params": _set("not_a_parameter", 1)}, r"unexpected keyword argument 'not_a_parameter'"),
        ({"tensors": _permutation_broken}, r"order is not a permutation of 0\.\.2"),
        ({"tensors": _inverse_not_matching}, r"inverse_order does not undo"),
        ({"tensors": _nan_weight}, r"hold NaN or infinite values"),
        ({"tensors": lambda w: w.__setitem__("scaler_scale", torch.zeros(3, dtype=torch.float64))}, r"<= 0"),
        ({"tensors": lambda w: w.__setitem__("scaler_mean", torch.zeros(2, dtype=torch.float64))}, r"shape \(2,\)"),
    ],
)
def test_every_loaded_field_is_checked(saved, tmp_path, edit, message, checksum):
    _, path = saved
    bad = _rewrite(path, tmp_path / "bad.usfad", checksum=checksum, **edit)
    with pytest.raises(ModelFileError, match=rf"bad\.usfad.*{message}"):
        load(bad)


@pytest.mark.parametrize("command", [["score", "{model}", "{data}"], ["export", "{model}", "-o", "{onnx}"]])
def test_a_corrupted_permutation_is_a_clear_cli_error(saved, tmp_path, capsys, command):
    _, path = saved
    bad = _rewrite(path, tmp_path / "perm.usfad", tensors=_permutation_broken)
    data = tmp_path / "data.npz"
    np.savez(data, X=X)
    argv = [a.format(model=bad, data=data, onnx=tmp_path / "m.onnx") for a in command]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "perm.usfad" in err and "not a permutation" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "make",
    [
        lambda: USFlow(**FAST, n_blocks=1),
        lambda: NonUSFlow(**FAST, n_blocks=1),
        lambda: FlowDetector(**FAST, n_blocks=1, flow="usf-gin"),
        lambda: DeepSVDD(**FAST, latent_features=2),
        lambda: VAEFlow(**FAST, n_blocks=1),
        lambda: DeepSVDDVAE(**FAST),
    ],
)
def test_every_detector_saves_only_declared_state_and_round_trips(make, tmp_path):
    det = make().fit(X)
    assert set(det._extra_state()) <= set(BaseDetector.saved_state)
    again = load(det.save(tmp_path / "m.usfad"))
    np.testing.assert_array_equal(again.decision_function(X), det.decision_function(X))
    assert again.threshold_ == det.threshold_


def test_annotations_are_checksummed_extra_entries_that_cannot_replace_the_models_own(tmp_path):
    X = np.random.default_rng(0).normal(size=(60, 3))
    det = USFlow(epochs=1, hidden_features=(8,), n_blocks=1, random_state=0).fit(X)
    path = det.save(tmp_path / "m.usfad", annotations={"note": "from a sample"})
    with safe_open(str(path), "pt") as f:
        assert f.metadata()["note"] == "from a sample"
    assert np.array_equal(load(path).decision_function(X), det.decision_function(X))
    for key in ("params", "state", "class", "format"):
        with pytest.raises(ValueError, match=f"may not replace the model file's own entries \\['{key}'\\]"):
            det.save(tmp_path / "bad.usfad", annotations={key: "{}"})
    assert not (tmp_path / "bad.usfad").exists()
