"""Errors raised by usfad, each naming what was expected and what was given."""


class DataError(ValueError):
    """Input data that cannot be used: wrong shape, non-finite or non-numeric values."""


class TrainingDivergedError(RuntimeError):
    """The training loss became non-finite; nothing half-trained is returned."""


class ModelFileError(ValueError):
    """A model file that is missing, corrupted, of another version or of another model."""


class RepresentationCollapseWarning(UserWarning):
    """Deep SVDD mapped (almost) every training sample to the same point."""


class OutputPathError(ValueError):
    """An output path that would destroy an input, or that cannot be written: refused before any work."""
