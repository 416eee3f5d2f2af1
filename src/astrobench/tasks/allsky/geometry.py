"""The camera and the sky grid of Mommert (2020): where the fisheye sky sits in a frame, and its 33 sub-regions (a
central disc and 4 rings x 8 azimuth sectors).

Ring borders are ``linspace(0, R, 6)`` about the grid centre (R = the horizon radius in pixels); sector ``j`` covers
azimuths ``[-pi + j pi/4, -pi + (j + 1) pi/4)`` with azimuth ``arctan2(row - cy, col - cx)`` in array coordinates
(row 0 = the first row of the FITS array). Sub-region 0 is the disc; ring ``i`` (1..4), sector ``j`` is
``1 + 8 (i - 1) + j``. This is the numbering of cloudynight's ``AllskyCamera.generate_subregions`` and of its labels.

A :class:`CameraGeometry` says where that grid lies in a camera's frames. It comes from ``--set camera=...``:
``auto`` (estimated from the median of the frames, :func:`estimate_camera`), a preset name (``lowell``), or a dict
``{"cx": 700, "cy": 485, "r": 480}`` with optional ``rotation_deg``, ``flip`` and ``crop`` ([x0, x1, y0, y1]).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from astrobench.core.io import ConfigError

N_RINGS = 4
N_SECTORS = 8
N_SUBREGIONS = 1 + N_RINGS * N_SECTORS


@dataclass(frozen=True)
class CameraGeometry:
    """Where the sky is in a camera's frames, in frame pixels (x = column, y = row of the array as read).

    ``radius``: the horizon (the grid's outer border). ``rotation_deg``: the grid's azimuth origin turned by this
    angle (counter-clockwise in array coordinates). ``flip``: the frame is mirrored left-right about the centre first.
    ``crop``: only pixels with x0 <= x < x1 and y0 <= y < y1 belong to the sky. ``grid="cloudynight"`` reproduces
    cloudynight's integer radii and strict borders exactly (pixels on a border belong to no sub-region).
    ``source``: how it was obtained (auto, a preset name, given).
    """

    cx: float
    cy: float
    radius: float
    rotation_deg: float = 0.0
    flip: bool = False
    crop: tuple[int, int, int, int] | None = None
    grid: str = "standard"
    source: str = "given"
    frame_shape: tuple[int, int] | None = None
    extras: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["crop"] = list(self.crop) if self.crop else None
        out["frame_shape"] = list(self.frame_shape) if self.frame_shape else None
        return out

    def check(self, shape: tuple[int, int], where: Any = "camera") -> CameraGeometry:
        """Raise a one-line DataFormatError when the grid does not fit a frame of ``shape`` (rows, columns): the
        centre outside the frame, or a radius too small or larger than the frame."""
        from astrobench.core.io import DataFormatError

        h, w = shape
        if self.frame_shape is not None and tuple(self.frame_shape) != tuple(shape):
            fh, fw = self.frame_shape
            raise DataFormatError(where, f"the {self.source} camera geometry is for {fw} x {fh} frames, these are "
                                         f"{w} x {h}")
        if not (0 <= self.cx < w and 0 <= self.cy < h):
            raise DataFormatError(where, f"camera centre ({self.cx:g}, {self.cy:g}) lies outside the {w} x {h} frame")
        if not 8 <= self.radius <= max(h, w):
            raise DataFormatError(where, f"camera radius {self.radius:g} px does not fit the {w} x {h} frame")
        if self.crop is not None:
            x0, x1, y0, y1 = self.crop
            if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
                raise DataFormatError(where, f"camera crop {list(self.crop)} lies outside the {w} x {h} frame")
        return self


PRESETS = {
    # cloudynight (Mommert 2020) for the Lowell Observatory DCT all-sky camera: frames cropped to x 220-1190,
    # y 0-960; the grid is centred at shape/2 of the crop with (x, y) taken from (rows, columns), i.e. (480, 485) in
    # the crop = (700, 485) in the frame, R = min(960, 970) / 2 = 480
    "lowell": CameraGeometry(700.0, 485.0, 480.0, crop=(220, 1190, 0, 960), grid="cloudynight", source="lowell",
                             frame_shape=(1040, 1392)),
}


def parse_camera(value: Any) -> CameraGeometry | str:
    """``--set camera=`` value -> "auto", or a CameraGeometry (preset or given); a ConfigError names what is wrong."""
    if isinstance(value, CameraGeometry):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text in ("auto", "per_frame"):
            return text
        if text.lower() in PRESETS:
            return PRESETS[text.lower()]
        if text.startswith("{"):
            value = dict_from_text(text, "camera")
        else:
            raise ConfigError(f"camera must be auto, per_frame, a preset ({', '.join(PRESETS)}) or a dict like "
                              f"{{\"cx\": 700, \"cy\": 485, \"r\": 480}}, got {value!r}")
    if not isinstance(value, dict):
        raise ConfigError(f"camera must be auto, a preset name or a dict, got {value!r}")
    allowed = {"cx", "cy", "r", "radius", "rotation_deg", "flip", "crop", "preset"}
    unknown = set(value) - allowed
    if unknown:
        raise ConfigError(f"camera: unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(allowed))}")
    preset = str(value["preset"]).lower() if "preset" in value else None
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"camera: unknown preset {value['preset']!r}; presets: {', '.join(PRESETS)}")
    base = PRESETS[preset] if preset is not None else None
    radius = value.get("r", value.get("radius", base.radius if base else None))
    cx, cy = value.get("cx", base.cx if base else None), value.get("cy", base.cy if base else None)
    if any(v is None for v in (cx, cy, radius)):
        raise ConfigError("camera: a dict needs cx, cy and r (pixels)")
    for key, v in (("cx", cx), ("cy", cy), ("r", radius), ("rotation_deg", value.get("rotation_deg", 0.0))):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
            raise ConfigError(f"camera: {key} must be a number, got {v!r}")
    if not radius > 0:
        raise ConfigError(f"camera: r must be positive, got {radius}")
    crop = value.get("crop", base.crop if base else None)
    if crop is not None:
        if not (isinstance(crop, (list, tuple)) and len(crop) == 4 and all(isinstance(c, int) for c in crop)):
            raise ConfigError(f"camera: crop must be [x0, x1, y0, y1] in whole pixels, got {crop!r}")
        crop = tuple(crop)
    flip = value.get("flip", False)
    if not isinstance(flip, bool):
        raise ConfigError(f"camera: flip must be true or false, got {flip!r}")
    geo = CameraGeometry(float(cx), float(cy), float(radius), float(value.get("rotation_deg", 0.0)), flip, crop,
                         base.grid if base else "standard", "given" if base is None else f"{base.source} (edited)",
                         base.frame_shape if base else None)
    return geo


def dict_from_text(text: str, what: str) -> dict:
    """A dict written as JSON or as a Python literal (what ``--set key={...}`` hands over); never evaluated."""
    import ast

    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError) as err:
        raise ConfigError(f"{what}: not a valid dict ({type(err).__name__}: {err})") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{what}: expected a dict, got {text!r}")
    return value


def subregion_map(shape: tuple[int, int], cx: float, cy: float, radius: float, rotation_deg: float = 0.0,
                  flip: bool = False, grid: str = "standard") -> np.ndarray:
    """(H, W) int array: the sub-region (0..32) of each pixel, -1 beyond ``radius`` from (cx, cy).

    ``grid="cloudynight"`` reproduces cloudynight exactly: radii truncated to whole pixels, and pixels exactly on a
    ring or sector border belong to no sub-region (-1), as its strict inequalities leave them."""
    rows, cols = np.indices(shape, dtype=np.float64)
    dx = cols - cx
    if flip:
        dx = -dx
    azimuth = np.arctan2(rows - cy, dx)
    if rotation_deg:
        azimuth = (azimuth - np.radians(rotation_deg) + np.pi) % (2 * np.pi) - np.pi
    if grid == "cloudynight":
        r = np.sqrt(dx**2 + (rows - cy) ** 2).astype(int)
        r_borders = np.linspace(0, radius, N_RINGS + 2)
        az_borders = np.linspace(-np.pi, np.pi, N_SECTORS + 1)
        index = np.full(shape, -1)
        index[r < r_borders[1]] = 0
        for i in range(1, N_RINGS + 1):
            for j in range(N_SECTORS):
                sel = ((r > r_borders[i]) & (r < r_borders[i + 1])
                       & (azimuth > az_borders[j]) & (azimuth < az_borders[j + 1]))
                index[sel] = 1 + N_SECTORS * (i - 1) + j
        return index
    r = np.hypot(dx, rows - cy)
    ring = np.floor(r / (radius / (N_RINGS + 1))).astype(int)
    sector = np.floor((azimuth + np.pi) / (2 * np.pi / N_SECTORS)).astype(int)
    sector = np.clip(sector, 0, N_SECTORS - 1)  # azimuth exactly +pi
    index = np.where(ring == 0, 0, 1 + N_SECTORS * (ring - 1) + sector)
    return np.where(r < radius, index, -1)


def camera_subregion_map(shape: tuple[int, int], camera: CameraGeometry) -> np.ndarray:
    """The sub-region of every pixel of a frame of ``shape`` under ``camera`` (crop included)."""
    index = subregion_map(shape, camera.cx, camera.cy, camera.radius, camera.rotation_deg, camera.flip, camera.grid)
    if camera.crop is not None:
        x0, x1, y0, y1 = camera.crop
        inside = np.zeros(shape, dtype=bool)
        inside[y0:y1, x0:x1] = True
        index = np.where(inside, index, -1)
    return index


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
