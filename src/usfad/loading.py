"""``usfad.load``: one entry point for every model file, tabular or image.

A model file declares its format in its metadata (:func:`usfad.modelfile.model_file_format`);
``load`` hands it to the reader of that format: :meth:`usfad.detectors.BaseDetector.load`
for ``usfad-detector`` files, :meth:`usfad.vision.ImageDetector.load` for
``usfad-image-detector`` files. Each reader checks everything it restores.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .detectors.base import FORMAT as DETECTOR_FORMAT
from .detectors.base import BaseDetector
from .errors import ModelFileError
from .modelfile import model_file_format

if TYPE_CHECKING:
    from .vision.detector import ImageDetector


def load(path: str | os.PathLike[str], device: str = "cpu", **options: Any) -> BaseDetector | ImageDetector:
    """Load any detector saved with ``save``: a tabular detector or an :class:`ImageDetector`.

    ``options`` go to the image reader (``backbone=`` a module to use instead of rebuilding
    the saved one); a tabular file takes none. A file of another format is a
    :class:`~usfad.errors.ModelFileError` naming it.
    """
    from .vision.detector import FORMAT as IMAGE_FORMAT  # the image stack loads only when needed

    fmt = model_file_format(path)
    if fmt == IMAGE_FORMAT:
        from .vision.detector import ImageDetector

        return ImageDetector.load(path, device=device, **options)
    if fmt == DETECTOR_FORMAT:
        if options:
            raise TypeError(f"a tabular detector file takes no loading options, got {sorted(options)}")
        return BaseDetector.load(path, device=device)
    raise ModelFileError(f"{path} is a usfad file of unknown format {fmt!r}")
