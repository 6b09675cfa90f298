"""The argument checks every public entry point shares.

Python counts ``True`` as the integer 1, so "is this a count?" needs more than
``isinstance(x, int)``; these helpers say it once. Each entry point still raises its own
``ValueError`` naming the argument and what to pass.
"""

from __future__ import annotations

import numpy as np

__all__ = ["is_int", "is_integer", "is_number", "video_index"]


def is_int(value) -> bool:
    """A Python ``int`` and not a ``bool`` (for values that end up in JSON, such as configs)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_integer(value) -> bool:
    """A Python or NumPy integer, not a ``bool`` (indices, counts from arrays)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_number(value, numpy: bool = False) -> bool:
    """A Python ``int`` or ``float`` (and, with ``numpy``, a NumPy real number), not a
    ``bool``. NaN and infinities count as numbers: check ranges separately."""
    kinds = (int, float, np.integer, np.floating) if numpy else (int, float)
    return isinstance(value, kinds) and not isinstance(value, (bool, np.bool_))


def video_index(index, count: int) -> int:
    """``index`` of one of ``count`` videos as a non-negative ``int`` (negative indices count
    from the end, as in a list); ``TypeError`` or ``IndexError`` saying what is wrong."""
    if not is_integer(index):
        raise TypeError(f"video index must be an integer, got {index!r}")
    if not -count <= index < count:
        raise IndexError(f"video index {index} out of range for {count} videos")
    return int(index) % count
