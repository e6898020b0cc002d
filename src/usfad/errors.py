"""Errors raised by usfad, each naming what was expected and what was given."""

from sklearn.exceptions import NotFittedError as _SklearnNotFittedError


class DataError(ValueError):
    """Input data that cannot be used: wrong shape, non-finite or non-numeric values."""


class NonFiniteScoresError(DataError):
    """A fitted model gave NaN or infinite scores: its training probably diverged."""


class NotFittedError(_SklearnNotFittedError, RuntimeError):
    """A detector used before ``fit``.

    scikit-learn's :class:`~sklearn.exceptions.NotFittedError` (so a ``ValueError`` and an
    ``AttributeError``, what :func:`sklearn.utils.validation.check_is_fitted` raises), and a
    ``RuntimeError`` as usfad raised before.
    """


class TrainingDivergedError(RuntimeError):
    """The training loss became non-finite; nothing half-trained is returned."""


class ModelFileError(ValueError):
    """A model file that is missing, corrupted, of another version or of another model."""


class RepresentationCollapseWarning(UserWarning):
    """Deep SVDD mapped (almost) every training sample to the same point."""


class ThresholdWarning(UserWarning):
    """``threshold_`` will not flag fresh normal rows at the rate it was set for (e.g. a model
    that fits its training rows much better than held-out ones); rankings are not affected."""


class OutputPathError(ValueError):
    """An output path that would destroy an input, or that cannot be written: refused before any work."""


class MissingDependencyError(ImportError):
    """An optional package that a model or an executor needs is not installed."""
