"""Sub-commands of the ``usfad`` command line (see :mod:`usfad.cli`)."""
