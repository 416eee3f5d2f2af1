"""The sky grid of Mommert (2020): a central disc and 4 rings x 8 azimuth sectors = 33 sub-regions.

Ring borders are ``linspace(0, R, 6)`` about the grid centre (R = the horizon radius in pixels); sector ``j`` covers
azimuths ``[-pi + j pi/4, -pi + (j + 1) pi/4)`` with azimuth ``arctan2(row - cy, col - cx)`` in array coordinates
(row 0 = the first row of the FITS array). Sub-region 0 is the disc; ring ``i`` (1..4), sector ``j`` is
``1 + 8 (i - 1) + j``. This is the numbering of cloudynight's ``generate_subregions`` and of its labels.
"""

from __future__ import annotations

import numpy as np

N_RINGS = 4
N_SECTORS = 8
N_SUBREGIONS = 1 + N_RINGS * N_SECTORS


def subregion_map(shape: tuple[int, int], cx: float, cy: float, radius: float) -> np.ndarray:
    """(H, W) int array: the sub-region (0..32) of each pixel, -1 beyond ``radius`` from (cx, cy)."""
    rows, cols = np.indices(shape, dtype=np.float64)
    r = np.hypot(cols - cx, rows - cy)
    ring = np.floor(r / (radius / (N_RINGS + 1))).astype(int)
    sector = np.floor((np.arctan2(rows - cy, cols - cx) + np.pi) / (2 * np.pi / N_SECTORS)).astype(int)
    sector = np.clip(sector, 0, N_SECTORS - 1)  # azimuth exactly +pi
    index = np.where(ring == 0, 0, 1 + N_SECTORS * (ring - 1) + sector)
    return np.where(r < radius, index, -1)


def subregion_ring(index: np.ndarray) -> np.ndarray:
    """Ring number (0 = central disc, 1..4) of sub-region indices."""
    index = np.asarray(index)
    return np.where(index == 0, 0, 1 + (index - 1) // N_SECTORS)


def d4_subregion_permutations(size: int = 64) -> np.ndarray:
    """(8, 33) int array: under D4 element g (core.nets.d4_transform) of a square image centred on the grid,
    sub-region k of the original becomes sub-region ``perm[g, k]`` of the transformed image."""
    import torch

    from astrobench.core.nets import D4_ORDER, d4_transform

    c = (size - 1) / 2
    grid = subregion_map((size, size), c, c, size / 2)
    perms = np.zeros((D4_ORDER, N_SUBREGIONS), dtype=int)
    for g in range(D4_ORDER):
        moved = d4_transform(torch.as_tensor(grid), g).numpy()
        for k in range(N_SUBREGIONS):
            # where sub-region k's pixels land, the new grid's majority sub-region
            values = grid[moved == k]
            perms[g, k] = np.bincount(values[values >= 0], minlength=N_SUBREGIONS).argmax()
    return perms
