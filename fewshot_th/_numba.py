"""Numba set-up shared by the compiled kernels (landmark drawing, SynthHeads' rasteriser).

The kernels run in parallel over images. Numba's default OpenMP threading layer breaks in
processes forked after it started (DataLoader workers are such processes); its ``workqueue``
layer is fork-safe, so it is chosen unless the user picked a layer with NUMBA_THREADING_LAYER.
"""

import os

import numba

if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

__all__ = ["numba"]
