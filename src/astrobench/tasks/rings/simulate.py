"""Cherenkov-ring images like the school tutorial's (cesarjesusvalls/A3NetRingImg), rendered vectorised.

The tutorial draws each ring as 360 small filled PIL ellipses of diameter ``thickness``, one per degree,
centred at radius ``radius + U(-deformation, deformation)`` (a fresh draw per degree). This module
reproduces that distribution pixel for pixel without PIL: Pillow truncates an ellipse's bounding box to
integers and fills a fixed pixel pattern for each integer box size, so each of the 360 ellipses of a ring
is a table look-up (:data:`ELLIPSE_PIXELS`). The thin rings come out exactly as patchy as PIL's.

Parameter distributions (../shared/data/rings_reference_sample/README.md, i.e. the tutorial notebooks):

- ``single`` mode: centre x, y integers uniform in [5, S-5]; radius integer uniform in
  [4, min(x, y, S-x, S-y) - 1]; thickness U(0.2, 1.5); deformation U(0.5, 3).
- ``n_ring`` mode: number of rings uniform in {1, ..., max_rings}; per ring centre as above, radius integer in
  [3, min(x, y, S-x, S-y) - 2], thickness U(0.2, 1), deformation U(0, 1); rings combine by pixelwise max.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from astrobench.core.io import ConfigError

SIMULATOR_VERSION = "1"
N_ANGLES = 360
PARAM_NAMES = ("x", "y", "radius", "thickness", "deformation")

# Pixels Pillow (>= 9, checked against Pillow 13 by the tests) fills for an ellipse whose truncated integer
# bounding box is [x0, x0 + w] x [y0, y0 + h]: (dx, dy) offsets from (x0, y0), indexed by (w, h).
# Boxes with w <= 1 or h <= 1 fill the whole box, except w = h = 0, which fills nothing.
_LARGE_BOXES = {
    (2, 2): [(1, 0), (0, 1), (1, 1), (2, 1), (1, 2)],
    (2, 3): [(1, 0), (0, 1), (1, 1), (2, 1), (0, 2), (1, 2), (2, 2), (1, 3)],
    (3, 2): [(1, 0), (2, 0), (0, 1), (1, 1), (2, 1), (3, 1), (1, 2), (2, 2)],
    (3, 3): [(1, 0), (2, 0), (0, 1), (1, 1), (2, 1), (3, 1), (0, 2), (1, 2), (2, 2), (3, 2), (1, 3), (2, 3)],
}
MAX_BOX = 3  # largest tabulated box size: thickness must stay below MAX_BOX pixels


def _ellipse_pixel_table() -> tuple[np.ndarray, np.ndarray]:
    """(16, K, 2) offsets and (16,) pattern lengths for box sizes (w, h) in [0, 3]^2, index w * 4 + h.

    Slots beyond a pattern's length repeat its first pixel (lighting a pixel twice changes nothing), so the
    renderer needs no validity mask; the empty 0 x 0 pattern is handled by the renderer.
    """
    patterns = {}
    for w in range(MAX_BOX + 1):
        for h in range(MAX_BOX + 1):
            if (w, h) in _LARGE_BOXES:
                patterns[w, h] = _LARGE_BOXES[w, h]
            elif w == 0 and h == 0:
                patterns[w, h] = []
            else:
                patterns[w, h] = [(dx, dy) for dy in range(h + 1) for dx in range(w + 1)]
    k = max(len(p) for p in patterns.values())
    offsets = np.zeros(((MAX_BOX + 1) ** 2, k, 2), dtype=np.int64)
    lengths = np.zeros((MAX_BOX + 1) ** 2, dtype=np.int64)
    for (w, h), pix in patterns.items():
        idx = w * (MAX_BOX + 1) + h
        lengths[idx] = len(pix)
        if pix:
            offsets[idx] = pix + [pix[0]] * (k - len(pix))
    return offsets, lengths


ELLIPSE_OFFSETS, ELLIPSE_LENGTHS = _ellipse_pixel_table()
EMPTY_BOX = 0  # index of the 0 x 0 box, which Pillow leaves empty
_COS = np.cos(np.radians(np.arange(N_ANGLES)))
_SIN = np.sin(np.radians(np.arange(N_ANGLES)))


def render_rings(
    centers: np.ndarray,
    ring_radii: np.ndarray,
    thickness: np.ndarray,
    image_size: int = 28,
    present: np.ndarray | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Rasterise rings from per-degree radii, exactly as Pillow draws the tutorial's ellipses.

    Parameters
    ----------
    centers : (B, R, 2) float, ring centres (x = column, y = row) in pixels.
    ring_radii : (B, R, 360) float, the radius at each whole degree (radius + deformation draw), pixels.
    thickness : (B, R) float, ellipse diameter in pixels, < 3.
    present : (B, R) bool, which of the R ring slots hold a ring (default: all).
    out : optional (B, S, S) uint8 array to draw into.

    Returns
    -------
    (B, S, S) uint8 image with 1 on lit pixels (callers scale to 0/255 for PNG).
    """
    centers = np.asarray(centers, dtype=np.float64)
    n_img, n_ring = centers.shape[:2]
    thickness = np.asarray(thickness, dtype=np.float64)
    if np.any(thickness >= MAX_BOX):
        raise ConfigError(f"ring thickness must be < {MAX_BOX} px, got max {thickness.max():.2f}")
    if present is None:
        present = np.ones((n_img, n_ring), dtype=bool)
    s = int(image_size)
    if out is None:
        out = np.zeros((n_img, s, s), dtype=np.uint8)
    # Work on the list of rings that exist, not on empty slots.
    image_of_ring, slot = np.nonzero(present)
    ring_radii = np.asarray(ring_radii, dtype=np.float64)[image_of_ring, slot]  # (M, 360)
    centers = centers[image_of_ring, slot]  # (M, 2)
    half = thickness[image_of_ring, slot, None] / 2
    # Same float operations, in the same order, as the tutorial: x = cx + r cos(angle); box = x -/+ t/2.
    x = centers[:, 0, None] + ring_radii * _COS
    y = centers[:, 1, None] + ring_radii * _SIN
    x0 = np.trunc(x - half).astype(np.int32)  # Pillow casts the box to int: truncation toward zero
    y0 = np.trunc(y - half).astype(np.int32)
    box = (np.trunc(x + half).astype(np.int32) - x0) * (MAX_BOX + 1) + (np.trunc(y + half).astype(np.int32) - y0)
    # Draw on a canvas with a margin wide enough for every ellipse (no bounds checks), plus one spare "trash"
    # pixel at the end where empty 0 x 0 ellipses go; then crop the image out of it.
    lo = min(int(x0.min(initial=0)), int(y0.min(initial=0)), 0)
    side = max(int(x0.max(initial=0)), int(y0.max(initial=0)), s - 1) + MAX_BOX - lo + 1
    canvas = np.zeros(n_img * side * side + 1, dtype=np.uint8)
    trash = canvas.size - 1
    anchor = (image_of_ring.astype(np.int64)[:, None] * side + (y0 - lo)) * side + (x0 - lo)
    anchor[box == EMPTY_BOX] = trash
    flat_offsets = ELLIPSE_OFFSETS[..., 1] * side + ELLIPSE_OFFSETS[..., 0]  # (16, K)
    flat_offsets[EMPTY_BOX] = 0
    n_slots = int(ELLIPSE_LENGTHS[np.bincount(box.ravel(), minlength=len(ELLIPSE_LENGTHS)) > 0].max(initial=0))
    for k in range(n_slots):
        canvas[anchor + flat_offsets[box, k]] = 1
    out |= canvas[:-1].reshape(n_img, side, side)[:, -lo : -lo + s, -lo : -lo + s]
    return out


@dataclass
class RingParameters:
    """Drawn parameters of a batch of images with up to R rings each (pixels; x = column, y = row)."""

    centers: np.ndarray  # (N, R, 2) int
    radius: np.ndarray  # (N, R) int
    thickness: np.ndarray  # (N, R)
    deformation: np.ndarray  # (N, R)
    present: np.ndarray  # (N, R) bool

    @property
    def n_rings(self) -> np.ndarray:
        return self.present.sum(axis=1)

    def single_ring_labels(self) -> np.ndarray:
        """(N, 5) labels x, y, radius, thickness, deformation of each image's first ring."""
        return np.column_stack(
            [self.centers[:, 0, 0], self.centers[:, 0, 1], self.radius[:, 0], self.thickness[:, 0],
             self.deformation[:, 0]]
        ).astype(np.float64)


def _randint(rng: np.random.Generator, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Integers uniform in [low, high] inclusive, elementwise."""
    return low + np.floor(rng.random(np.shape(low)) * (high - low + 1)).astype(np.int64)


def draw_parameters(
    n: int, mode: str = "single", max_rings: int = 2, image_size: int = 28, rng: np.random.Generator | None = None
) -> RingParameters:
    """Draw ring parameters from the tutorial's distributions (see the module docstring)."""
    rng = np.random.default_rng(rng)
    s = int(image_size)
    if s < 16:
        raise ConfigError(f"image_size must be at least 16 px, got {s}")
    if mode == "single":
        n_slots, r_min, r_margin, t_range, d_range = 1, 4, 1, (0.2, 1.5), (0.5, 3.0)
        present = np.ones((n, 1), dtype=bool)
    elif mode == "n_ring":
        if not 1 <= max_rings <= 10:
            raise ConfigError(f"max_rings must be in [1, 10], got {max_rings}")
        n_slots, r_min, r_margin, t_range, d_range = max_rings, 3, 2, (0.2, 1.0), (0.0, 1.0)
        n_rings = rng.integers(1, max_rings, endpoint=True, size=n)
        present = np.arange(max_rings)[None, :] < n_rings[:, None]
    else:
        raise ConfigError(f"unknown ring mode {mode!r}; use 'single' or 'n_ring'")
    centers = rng.integers(5, s - 5, endpoint=True, size=(n, n_slots, 2))
    edge = np.minimum(centers.min(axis=2), (s - centers).min(axis=2))
    radius = _randint(rng, np.full_like(edge, r_min), edge - r_margin)
    thickness = rng.uniform(*t_range, size=(n, n_slots))
    deformation = rng.uniform(*d_range, size=(n, n_slots))
    return RingParameters(centers, radius, thickness, deformation, present)


def simulate_ring_images(
    n: int,
    mode: str = "single",
    max_rings: int = 2,
    image_size: int = 28,
    seed: int | None = 0,
    chunk: int = 2048,
) -> tuple[np.ndarray, RingParameters]:
    """Draw parameters and render ``n`` images; returns ((n, S, S) uint8 in {0, 255}, parameters)."""
    rng = np.random.default_rng(seed)
    params = draw_parameters(n, mode, max_rings, image_size, rng)
    images = np.zeros((n, image_size, image_size), dtype=np.uint8)
    for start in range(0, n, chunk):
        sl = slice(start, min(start + chunk, n))
        d = params.deformation[sl]
        radii = params.radius[sl, :, None] + rng.uniform(-1.0, 1.0, size=d.shape + (N_ANGLES,)) * d[..., None]
        render_rings(params.centers[sl], radii, params.thickness[sl], image_size, params.present[sl], images[sl])
    images *= 255
    return images, params


def render_ring_reference_pil(image_size: int, center, ring_radii, thickness: float) -> np.ndarray:
    """The tutorial's own procedure (360 ``ImageDraw.ellipse`` calls) for given per-degree radii.

    Kept only as the reference that tests and benchmarks compare :func:`render_rings` against.
    """
    from PIL import Image, ImageDraw

    img = Image.new("L", (image_size, image_size), color=0)
    draw = ImageDraw.Draw(img)
    for angle in range(N_ANGLES):
        r = ring_radii[angle]
        x = center[0] + r * np.cos(np.radians(angle))
        y = center[1] + r * np.sin(np.radians(angle))
        draw.ellipse([x - thickness / 2, y - thickness / 2, x + thickness / 2, y + thickness / 2], fill=255)
    return np.array(img)


def simulate(
    out: str | Path,
    n: int = 1000,
    seed: int = 0,
    format: str = "png",
    mode: str = "single",
    max_rings: int = 2,
    image_size: int = 28,
) -> Path:
    """Simulate ``n`` ring images and write them in the tutorial's format (``png``) or as one ``npz``.

    ``png`` writes ``ring_image_{i}.png`` plus ``labels.json`` (single mode) or ``labels.txt`` (n_ring mode)
    into the folder ``out``; ``npz`` writes ``out`` (a file ending in .npz, or ``out/rings.npz``).
    """
    from astrobench.tasks.rings.data import RingSet, write_rings

    images, params = simulate_ring_images(n, mode, max_rings, image_size, seed)
    ring_set = RingSet(
        images=images,
        n_rings=params.n_rings if mode == "n_ring" else None,
        params=params.single_ring_labels() if mode == "single" else None,
    )
    return write_rings(ring_set, out, format=format)
