"""Training health: the one reading of a finished run's per-epoch losses.

:func:`training_health` is the only code in usfad that decides whether a run's training went
wrong after it finished (a non-finite loss during training already raises
:class:`~usfad.errors.TrainingDivergedError`, and the run ends ``diverged``: see
:mod:`usfad.experiments.engine`). Its fields answer different questions, and each report
shows the one it has always shown:

``exploded`` (the stability study's ending, :mod:`usfad.studies.stability`)
    a training or validation loss after the first epoch is non-finite, or above the first
    epoch's by more than :data:`EXPLOSION_FACTOR` x ``max(1, |first|)``. Relative to where the
    run started, so it reads a loss of any unit (the tabular models' losses are not all
    NLLs per dimension); a curve of fewer than two epochs cannot explode.
``blew_up`` (the image benchmark's column, :mod:`usfad.reporting.image`)
    the last finite training loss is more than :data:`BLOW_UP_NATS` above the lowest finite
    one (thrown off by a bad step), or above :data:`UNSETTLED_NATS` (never settled). In nats
    per dimension: the image heads' loss on standardised features.
``largest_rise``
    how far the training loss ever climbed above the lowest loss of the epochs before it
    (``0.0`` when it fell every epoch, ``inf`` once it is non-finite). Unlike ``blew_up`` it
    also counts a jump the run recovered from.
``jumped``
    ``largest_rise`` above :data:`JUMP_NATS`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

#: a loss "exploded" when it rose this many times ``max(1, |first loss|)`` above the first epoch's
EXPLOSION_FACTOR = 10.0
#: a run "blew up" when its last epoch's loss is this many nats per dimension above its best epoch's
BLOW_UP_NATS = 1.0
#: ... or above this many nats per dimension: on standardised features (the image detector's
#: default) a Gaussian alone scores about 1.4, so a loss this high means the flow never settled
UNSETTLED_NATS = 10.0
#: a run "jumped" when its epoch loss ever rose this many nats per dimension above its best so far
JUMP_NATS = 0.1


@dataclass(frozen=True)
class TrainingHealth:
    """What :func:`training_health` read from a run's losses (see the module docstring)."""

    finite: bool
    exploded: bool
    blew_up: bool
    largest_rise: float

    @property
    def jumped(self) -> bool:
        return self.largest_rise > JUMP_NATS


def _exploded(curve: Sequence[float]) -> bool:
    values = [float(v) for v in curve]
    if len(values) < 2:
        return False
    first = values[0]
    return any(not math.isfinite(v) or v > first + EXPLOSION_FACTOR * max(1.0, abs(first)) for v in values[1:])


def _largest_rise(curve: Sequence[float]) -> float:
    best, rise = math.inf, 0.0
    for loss in curve:
        if not math.isfinite(loss):
            return math.inf
        if math.isfinite(best):
            rise = max(rise, loss - best)
        best = min(best, loss)
    return rise


def training_health(train_loss: Sequence[float], val_loss: Sequence[float] = ()) -> TrainingHealth:
    """Read the per-epoch training (and validation) losses of a finished run.

    Empty histories read as healthy: a caller that does not know a run's losses says so
    itself (the image table writes ``-``).
    """
    train = [float(v) for v in train_loss]
    val = [float(v) for v in val_loss]
    finite = [v for v in train if math.isfinite(v)]
    blew_up = bool(finite) and (finite[-1] > min(finite) + BLOW_UP_NATS or finite[-1] > UNSETTLED_NATS)
    return TrainingHealth(
        finite=all(math.isfinite(v) for v in train + val),
        exploded=_exploded(train) or _exploded(val),
        blew_up=blew_up,
        largest_rise=_largest_rise(train),
    )


__all__ = [
    "BLOW_UP_NATS",
    "EXPLOSION_FACTOR",
    "JUMP_NATS",
    "UNSETTLED_NATS",
    "TrainingHealth",
    "training_health",
]
