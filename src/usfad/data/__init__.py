"""Data: protocol splits, embedded demo datasets, file readers, ADBench loader."""

from .protocol import SEEDS, Split, protocol_t

__all__ = ["SEEDS", "Split", "protocol_t"]
