"""Reading labelled all-sky frames (a manifest or one folder per class), finding the fisheye circle, and turning
each frame into the network input and the hand-made features of Mommert (2020).

The formats (docs/tasks/allsky.md):

- ``manifest.csv`` with columns ``file,label`` (file relative to the CSV); optional ``cloud_fraction``,
  ``exptime_s`` and ``subregion_flags`` (33 characters 0/1, Mommert's sub-region order, see geometry.py). Flags may
  instead come from a ``subregion_flags.dat`` beside the manifest (cloudynight's form: the frame's file stem, then 33
  flags).
- or a folder with one sub-folder per class (``clear/``, ``overcast/``, ...) of frames.

Frames are FITS (``.fits``, ``.fit``, also ``.fits.gz`` and ``.fits.bz2``; 16-bit with BZERO as cameras write them;
the exposure time from ``EXPTIME``) or PNG/JPEG (8-bit frames are sRGB-encoded and linearised; colour is averaged to
grey; 16-bit PNG is linear). Any mix of them may sit in one folder.

The camera: ``camera=auto`` estimates each camera's sky circle and horizon mask (trees, buildings) from the median of
its frames (frames of one camera share a size; a manifest ``camera`` column separates cameras in one folder); a preset
(``lowell``) or a given circle (geometry.py) is used as it is; ``per_frame`` finds the circle in each frame alone.

Preprocessing of each frame: the pedestal (the darkest percent of the pixels outside the sky circle) is subtracted
and the counts divided by the exposure time; the sky disc is resampled onto a square grid of at most 256 pixels
across (flip and rotation undone, crop and horizon mask applied: those pixels are 0), stretched with a
percentile/asinh stretch, and reduced to ``image_size`` pixels twice: a block mean (clouds and gradients) and a block
maximum (stars); a third channel is the log of the exposure-normalised rate (how bright the sky is, which the
per-frame stretch removes).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from astrobench.core.io import DataFormatError
from astrobench.core.parallel import executor
from astrobench.tasks.allsky.geometry import N_SUBREGIONS, CameraGeometry, subregion_map, subregion_ring

FRAME_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fits.bz2", ".fit.gz", ".fit.bz2", ".png", ".jpg", ".jpeg")
KNOWN_CLASSES = ("clear", "partly_cloudy", "overcast")
STRETCH_PERCENTILES = (1.0, 99.5)
ASINH_SOFTENING = 10.0
FEATURE_GRID_PX = 256  # features are measured on the circle's square reduced to at most this size
STAR_THRESHOLD_SIGMA = 5.0
FEATURE_NAMES = ("star_density_per_100deg2", "log_sky_rate_adu_s", "sky_rate_rel_std", "stretched_median")


@dataclass(frozen=True)
class SkyCircle:
    """The fisheye image of the sky: centre (x = column, y = row) and horizon radius, in frame pixels."""

    cx: float
    cy: float
    radius: float


@dataclass
class FrameSet:
    """Preprocessed frames: network inputs, features, labels.

    ``images`` (N, 3, S, S) float32 in [0, 1] (channels: stretched block mean, stretched block maximum, log rate);
    ``features`` (N, F);
    ``labels`` (N,) class indices into ``class_names`` (-1 when unknown); ``flags`` (N, 33) float32 (NaN rows when
    a frame has no sub-region flags); ``cloud_fraction`` (N,) (NaN when unknown); ``exptime_s`` (N,).
    """

    images: np.ndarray
    features: np.ndarray
    labels: np.ndarray
    flags: np.ndarray
    cloud_fraction: np.ndarray
    exptime_s: np.ndarray
    files: list[str]
    class_names: list[str]
    source: str = ""
    feature_names: list[str] = field(default_factory=list)
    cameras: dict[str, dict] = field(default_factory=dict)  # camera id -> the geometry used (CameraGeometry.to_dict)
    flag_margin: np.ndarray | None = None  # (N,) simulated frames: distance of the closest sub-region to the flag rule
    camera_ids: list[str] = field(default_factory=list)  # the manifest's camera column per frame ("" without one)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def has_flags(self) -> np.ndarray:
        return ~np.isnan(self.flags).any(axis=1)

    def subset(self, idx) -> FrameSet:
        idx = np.asarray(idx) if not isinstance(idx, slice) else idx

        def pick(a):
            return a[idx]

        files = list(np.asarray(self.files, dtype=object)[idx])
        return FrameSet(pick(self.images), pick(self.features), pick(self.labels), pick(self.flags),
                        pick(self.cloud_fraction), pick(self.exptime_s), files, self.class_names, self.source,
                        self.feature_names, self.cameras,
                        None if self.flag_margin is None else self.flag_margin[idx],
                        list(np.asarray(self.camera_ids, dtype=object)[idx]) if self.camera_ids else [])

    def save(self, path: Path) -> None:
        np.savez(path, images=self.images.astype(np.float16), features=self.features, labels=self.labels,
                 flags=self.flags, cloud_fraction=self.cloud_fraction, exptime_s=self.exptime_s,
                 files=np.asarray(self.files), class_names=np.asarray(self.class_names), source=self.source,
                 feature_names=np.asarray(self.feature_names), cameras=json.dumps(self.cameras),
                 flag_margin=np.full(len(self), np.nan) if self.flag_margin is None else self.flag_margin,
                 camera_ids=np.asarray(self.camera_ids or [""] * len(self)))

    @classmethod
    def load(cls, path: Path) -> FrameSet:
        with np.load(path) as z:
            return cls(z["images"].astype(np.float32), z["features"], z["labels"], z["flags"], z["cloud_fraction"],
                       z["exptime_s"], [str(f) for f in z["files"]], [str(c) for c in z["class_names"]],
                       str(z["source"]), [str(f) for f in z["feature_names"]],
                       json.loads(str(z["cameras"])) if "cameras" in z else {},
                       z["flag_margin"] if "flag_margin" in z else None,
                       [str(c) for c in z["camera_ids"]] if "camera_ids" in z else [])


# --- reading one frame ---------------------------------------------------------------------------------------

def is_frame_file(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(FRAME_SUFFIXES)


def read_frame(path: str | Path) -> tuple[np.ndarray, float | None]:
    """(linear counts (H, W) float64, exposure time in s or None) from a FITS, PNG or JPEG frame.

    FITS: the first image HDU (astropy applies BZERO/BSCALE); a 3-D cube is refused. 8-bit PNG/JPEG frames are
    gamma-encoded the way cameras write them (sRGB): they are linearised, and colour is averaged to grey. 16-bit PNG
    frames are taken as linear."""
    path = Path(path)
    if not path.exists():
        raise DataFormatError(path, "frame file not found")
    name = path.name.lower()
    try:
        if ".fit" in name:
            from astropy.io import fits

            with fits.open(path) as hdul:
                hdu = next((h for h in hdul if h.data is not None and np.ndim(h.data) >= 2), None)
                if hdu is None:
                    raise DataFormatError(path, "the FITS file has no image")
                if np.ndim(hdu.data) != 2:
                    raise DataFormatError(path, f"a {np.ndim(hdu.data)}-D FITS cube of shape {hdu.data.shape}; "
                                                "expected one 2-D image per file")
                data = np.asarray(hdu.data, dtype=np.float64)  # astropy applies BZERO/BSCALE
                header = hdu.header
            exptime = next((float(header[k]) for k in ("EXPTIME", "EXPOSURE", "EXP_TIME") if k in header), None)
        else:
            from PIL import Image

            with Image.open(path) as im:
                eight_bit = im.mode in ("L", "RGB", "RGBA", "P", "LA")
                if im.mode in ("P", "RGBA"):
                    im = im.convert("RGB")  # alpha is not light
                elif im.mode == "LA":
                    im = im.convert("L")
                data = np.asarray(im, dtype=np.float64)
            if data.ndim == 3:
                data = data[..., :3].mean(axis=-1)
            if eight_bit:
                data = srgb_to_linear(data / 255.0) * 65535.0
            exptime = None
    except DataFormatError:
        raise
    except Exception as err:  # astropy, PIL and the decompressors raise many kinds
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataFormatError(path, f"cannot read this frame ({first})") from None
    if data.ndim != 2 or min(data.shape) < 32:
        raise DataFormatError(path, f"expected a 2-D image of at least 32 x 32 pixels, got shape {data.shape}")
    if not np.isfinite(data).all():
        bad = np.count_nonzero(~np.isfinite(data))
        raise DataFormatError(path, f"{bad} pixels are NaN or infinite")
    if exptime is not None and not exptime > 0:
        raise DataFormatError(path, f"EXPTIME must be positive, got {exptime}")
    return data, exptime


def srgb_to_linear(v: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] -> linear intensity (IEC 61966-2-1)."""
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(v: np.ndarray) -> np.ndarray:
    """Linear intensity in [0, 1] -> sRGB-encoded values (IEC 61966-2-1)."""
    v = np.clip(v, 0, 1)
    return np.where(v <= 0.0031308, 12.92 * v, 1.055 * v ** (1 / 2.4) - 0.055)


def frame_shape(path: Path) -> tuple[int, int]:
    """(rows, columns) of a frame from its header, without reading the pixels where the format allows."""
    name = path.name.lower()
    try:
        if ".fit" in name:
            from astropy.io import fits

            with fits.open(path) as hdul:
                for h in hdul:
                    naxis = int(h.header.get("NAXIS", 0))
                    if naxis >= 2 and all(int(h.header.get(f"NAXIS{i}", 0)) > 0 for i in (1, 2)):
                        return int(h.header["NAXIS2"]), int(h.header["NAXIS1"])
            return (0, 0)
        from PIL import Image

        with Image.open(path) as im:
            return im.size[1], im.size[0]
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataFormatError(path, f"cannot read this frame ({first})") from None


def _block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    h, w = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    return image[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))


def find_sky_circle(image: np.ndarray) -> SkyCircle:
    """The fisheye sky circle: the circle along which the log brightness drops most steeply outward.

    A grid search over centres and radii on a reduced, smoothed log image scores each circle by the median over
    azimuth of (inside - outside) brightness 2 px either side: the median ignores the part of the horizon hidden by
    trees and buildings or brightened by a lamp, where threshold-and-fit methods fail. A coarse grid, then two finer
    ones around the best circle."""
    from scipy.ndimage import gaussian_filter, map_coordinates

    def log_reduced(size: int):
        factor = max(1, min(image.shape) // size)
        small = _block_mean(image, factor)
        small = small - np.percentile(small, 1)
        # a floor at 5 % of the bright sky: in the log, the fall of a faint lens glow or of the dark corners would
        # otherwise look as steep as the horizon
        floor = 0.05 * max(float(np.percentile(small, 95)), 1e-9)
        return factor, gaussian_filter(np.log10(np.clip(small, floor, None)), 1.0)

    theta = np.linspace(0, 2 * np.pi, 64, endpoint=False)

    def best(log_image, cxs, cys, radii):
        cx, cy, r = (a.ravel()[:, None] for a in np.meshgrid(cxs, cys, radii, indexing="ij"))
        inner = map_coordinates(log_image, [cy + (r - 2) * np.sin(theta), cx + (r - 2) * np.cos(theta)], order=1,
                                mode="nearest")
        outer = map_coordinates(log_image, [cy + (r + 2) * np.sin(theta), cx + (r + 2) * np.cos(theta)], order=1,
                                mode="nearest")
        score = np.median(inner - outer, axis=1)
        k = int(score.argmax())
        return float(cx[k, 0]), float(cy[k, 0]), float(r[k, 0]), float(score[k])

    coarse_factor, coarse = log_reduced(80)
    h, w = coarse.shape
    m = min(h, w)
    cx, cy, r, score = best(coarse, np.linspace(w / 2 - 0.15 * m, w / 2 + 0.15 * m, 7),
                            np.linspace(h / 2 - 0.15 * m, h / 2 + 0.15 * m, 7), np.linspace(0.3 * m, 0.62 * m, 24))
    # the horizon is the first strong fall outward: a lens glow ring beyond it has an outer edge too, sometimes as
    # strong; take the innermost radius whose score is a local maximum within 60 % of the best
    radii = np.arange(0.3 * m, r + 0.5, 0.5)
    profile = np.array([best(coarse, np.array([cx]), np.array([cy]), np.array([rr]))[3] for rr in radii])
    peaks = [i for i in range(1, len(radii) - 1)
             if profile[i] >= profile[i - 1] and profile[i] >= profile[i + 1] and profile[i] >= 0.6 * score]
    if peaks and radii[peaks[0]] < 0.95 * r:
        r = float(radii[peaks[0]])
    factor, log_image = log_reduced(160)
    scale = coarse_factor / factor  # coarse -> fine pixel coordinates
    cx, cy, r = (cx + 0.5) * scale - 0.5, (cy + 0.5) * scale - 0.5, r * scale
    m = min(log_image.shape)
    for step in (0.02 * m, 0.005 * m, 0.0015 * m):
        offsets = step * np.arange(-3, 4)
        cx, cy, r, score = best(log_image, cx + offsets, cy + offsets, r + offsets)
    if not score > 0.05:
        raise DataFormatError("frame", "no fisheye sky circle found: no circle where the frame gets darker outward")
    # block pixel i covers frame pixels [i f, (i + 1) f): its centre is at i f + (f - 1) / 2
    return SkyCircle(cx * factor + (factor - 1) / 2, cy * factor + (factor - 1) / 2, (r + 0.5) * factor)


# --- the camera: geometry from a stack of frames ------------------------------------------------------------

STACK_FRAMES = 24  # frames per camera whose median gives the geometry
STACK_PX = 320  # the stack is built at about this many pixels across the short side
FIRST_FALL_DEX = 0.5  # along a ray from the centre, a fall this deep below the brightest sky inward is the horizon
HORIZON_DARK_FRACTION = 0.45  # a sky pixel darker than this fraction of its ring's median in the stack is horizon


@dataclass
class Camera:
    """A camera's geometry and its horizon mask (True = trees, buildings: not sky), the mask on the stack's grid
    (frame pixels block-reduced by ``mask_factor``)."""

    geometry: CameraGeometry
    horizon: np.ndarray | None = None
    mask_factor: int = 1

    def horizon_fraction(self) -> float:
        """The part of the sky disc the horizon mask hides."""
        if self.horizon is None:
            return 0.0
        g, f = self.geometry, self.mask_factor
        yy, xx = np.indices(self.horizon.shape)
        disc = np.hypot((xx + 0.5) * f - 0.5 - g.cx, (yy + 0.5) * f - 0.5 - g.cy) < g.radius
        return float(self.horizon[disc].mean()) if disc.any() else 0.0


def stack_member(frame: np.ndarray) -> tuple[np.ndarray, int]:
    """A frame block-reduced to about STACK_PX across its short side, pedestal removed and divided by its median, so
    that a bright and a dark frame weigh alike in the median stack; and the reduction factor."""
    factor = max(1, min(frame.shape) // STACK_PX)
    small = _block_mean(frame, factor)
    small = small - np.percentile(small, 1)
    return (small / max(float(np.median(small)), 1e-9)).astype(np.float32), factor


def _read_stack_member(path: str | Path) -> tuple[np.ndarray, int]:
    return stack_member(read_frame(path)[0])


def estimate_camera(frames: list[np.ndarray], where: Any = "frames", reduced: bool = False,
                    frame_shape: tuple[int, int] | None = None) -> Camera:
    """Centre and radius of the sky circle and the horizon mask, from the median of a camera's frames.

    The circle is where the stack gets darker outward (``find_sky_circle``; the median over azimuth ignores the
    trees, and a lens glow beyond the horizon is fainter than the sky inside it). The horizon mask marks the pixels
    inside the circle that stay dark in the stack compared with the median of their ring (trees, buildings, domes).
    The azimuth origin cannot be found from the pixels alone (it needs an astrometric solution): rotation is 0 unless
    given. ``reduced=True``: ``frames`` are already (stack_member output, factor) pairs of frames of ``frame_shape``.
    """
    members = frames if reduced else [stack_member(f) for f in frames]
    factor = members[0][1]
    stack = np.median([m for m, _ in members], axis=0)
    shape = frame_shape if reduced else tuple(frames[0].shape)
    try:
        circle = find_sky_circle(stack)
    except DataFormatError:
        raise DataFormatError(where, "no fisheye sky circle found in the median of the frames; give it with "
                                     "--set camera='{\"cx\": X, \"cy\": Y, \"r\": R}'") from None
    circle = first_fall_circle(stack, circle)
    for _ in range(2):
        circle = refine_circle(stack, circle)
    cx, cy, r = ((circle.cx + 0.5) * factor - 0.5, (circle.cy + 0.5) * factor - 0.5, circle.radius * factor)
    geometry = CameraGeometry(round(cx, 2), round(cy, 2), round(r, 2), source="auto", frame_shape=shape,
                              extras={"n_frames_stacked": len(members)})
    return Camera(geometry, horizon_mask(stack, circle), factor)


def horizon_mask(stack: np.ndarray, circle: SkyCircle) -> np.ndarray:
    """True where the median stack stays darker than HORIZON_DARK_FRACTION of the median of its ring (40 rings) in
    the outer half of the sky circle (given in the stack's pixels): trees, buildings, domes."""
    from scipy.ndimage import binary_opening, gaussian_filter

    smooth = gaussian_filter(stack, 1.0)
    yy, xx = np.indices(stack.shape)
    rr = np.hypot(xx - circle.cx, yy - circle.cy)
    disc = rr < circle.radius
    rings = np.minimum((rr / circle.radius * 40).astype(int), 40)
    ring_median = np.zeros(41)
    for k in range(41):
        sel = disc & (rings == k)
        ring_median[k] = np.median(smooth[sel]) if sel.any() else 0.0
    horizon = disc & (smooth < HORIZON_DARK_FRACTION * ring_median[rings]) & (rr > 0.5 * circle.radius)
    return binary_opening(horizon, iterations=1)


def first_fall_circle(image: np.ndarray, circle: SkyCircle, n_rays: int = 180) -> SkyCircle:
    """The horizon as the first steep fall along rays from ``circle``'s centre, beyond 0.6 of its radius: a lens
    glow ring beyond the horizon falls off too, and a grid search scoring whole circles can settle on one that follows
    the horizon on one side and the glow's outer edge on the other. Along each ray, the first point FIRST_FALL_DEX
    below the brightest point inward of it (a fall to under a third; vignetting falls less except at the steepest
    settings of CAMERA_RANGES) marks the edge; a circle fitted to the edges by least
    squares, rays more than 3 median deviations off dropped (trees, lamps). ``circle`` is returned unchanged when
    fewer than 24 rays find an edge."""
    from scipy.ndimage import gaussian_filter, map_coordinates

    log_image = gaussian_filter(np.log10(np.clip(image, 1e-3 * max(float(np.percentile(image, 99)), 1e-9), None)), 1.0)
    theta = np.linspace(0, 2 * np.pi, n_rays, endpoint=False)
    frac = np.linspace(0.4, 1.4, 401)
    radii = circle.radius * frac
    profile = map_coordinates(log_image, [circle.cy + radii[None, :] * np.sin(theta)[:, None],
                                          circle.cx + radii[None, :] * np.cos(theta)[:, None]],
                              order=1, mode="constant", cval=np.nan)
    edges, angles = [], []
    start = int(np.searchsorted(frac, 0.6))
    for k in range(n_rays):
        ray = profile[k]
        running = np.fmax.accumulate(np.where(np.isnan(ray), -np.inf, ray))
        fallen = np.flatnonzero((ray < running - FIRST_FALL_DEX) & (np.arange(len(ray)) >= start))
        if not len(fallen) or np.isnan(ray[: fallen[0] + 1]).any():
            continue  # no fall, or the ray left the frame before it
        edges.append(radii[fallen[0]])
        angles.append(theta[k])
    if len(edges) < 24:
        return circle
    fit = _kasa_fit(circle.cx + np.asarray(edges) * np.cos(angles), circle.cy + np.asarray(edges) * np.sin(angles))
    return fit or circle


def _kasa_fit(x: np.ndarray, y: np.ndarray, min_points: int = 12) -> SkyCircle | None:
    """Least-squares circle through the points (Kasa 1976), three rounds dropping points more than 3 median
    deviations (at least 0.5 px) off; None when fewer than ``min_points`` remain."""
    keep = np.ones(len(x), dtype=bool)
    cx = cy = r = 0.0
    for _ in range(3):
        if keep.sum() < min_points:
            return None
        design = np.stack([x[keep], y[keep], np.ones(keep.sum())], axis=1)
        sol = np.linalg.lstsq(design, x[keep] ** 2 + y[keep] ** 2, rcond=None)[0]
        cx, cy = sol[0] / 2, sol[1] / 2
        r = np.sqrt(sol[2] + cx**2 + cy**2)
        resid = np.hypot(x - cx, y - cy) - r
        mad = 1.4826 * np.median(np.abs(resid[keep] - np.median(resid[keep])))
        keep = np.abs(resid - np.median(resid[keep])) < max(3 * mad, 0.5)
    return SkyCircle(float(cx), float(cy), float(r))


def refine_circle(image: np.ndarray, circle: SkyCircle, n_rays: int = 180) -> SkyCircle:
    """The horizon to a fraction of a pixel: along rays from the centre, where the log brightness falls most steeply
    within 5 % of the current radius (a blurred step falls fastest at the step; vignetting falls far more gently);
    a circle fitted to those edge points by least squares (Kasa 1976), dropping rays more than 3 median deviations
    off (trees, lamps) and rays that leave the frame or fall by less than 0.1 dex. The grid search of
    find_sky_circle is only as fine as its samples 2 px either side of the edge."""
    from scipy.ndimage import gaussian_filter, map_coordinates

    log_image = gaussian_filter(np.log10(np.clip(image, 1e-3 * max(float(np.percentile(image, 99)), 1e-9), None)), 0.7)
    theta = np.linspace(0, 2 * np.pi, n_rays, endpoint=False)
    frac = np.linspace(0.9, 1.1, 161)
    radii = circle.radius * frac
    ys = circle.cy + radii[None, :] * np.sin(theta)[:, None]
    xs = circle.cx + radii[None, :] * np.cos(theta)[:, None]
    profile = map_coordinates(log_image, [ys, xs], order=1, mode="constant", cval=np.nan)
    window = (frac >= 0.95) & (frac <= 1.05)
    edges, angles = [], []
    for k in range(n_rays):
        if np.isnan(profile[k]).any():
            continue  # the ray leaves the frame
        inner = np.median(profile[k, (frac >= 0.9) & (frac <= 0.95)])
        outer = np.median(profile[k, (frac >= 1.05) & (frac <= 1.1)])
        if inner - outer < 0.1:
            continue
        slope = np.gradient(profile[k])
        j = int(np.flatnonzero(window)[np.argmin(slope[window])])
        if 0 < j < len(frac) - 1:  # parabolic interpolation of the steepest point
            a, b, c = slope[j - 1], slope[j], slope[j + 1]
            shift = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) != 0 else 0.0
            j = j + float(np.clip(shift, -0.5, 0.5))
        edges.append(circle.radius * np.interp(j, np.arange(len(frac)), frac))
        angles.append(theta[k])
    if len(edges) < 12:
        return circle
    fit = _kasa_fit(circle.cx + np.asarray(edges) * np.cos(angles), circle.cy + np.asarray(edges) * np.sin(angles))
    if fit is None or not np.isfinite(fit.radius) or abs(fit.radius - circle.radius) > 0.08 * circle.radius or \
            np.hypot(fit.cx - circle.cx, fit.cy - circle.cy) > 0.08 * circle.radius:
        return circle  # a fit pulled away by too few good rays: keep the grid search's circle
    return fit


# --- preprocessing -------------------------------------------------------------------------------------------

def sky_grid(counts: np.ndarray, camera: Camera) -> tuple[np.ndarray, np.ndarray, int]:
    """The sky disc of a frame resampled onto a square grid of G <= FEATURE_GRID_PX pixels across the horizon
    diameter, in the grid orientation (flip and rotation undone): (values (G, G), sky mask (G, G), G). Sky = inside
    the horizon, inside the frame and its crop, not under the horizon mask."""
    from scipy.ndimage import map_coordinates

    g = camera.geometry
    size = int(min(FEATURE_GRID_PX, max(32, round(2 * g.radius))))
    scale = 2 * g.radius / size  # frame pixels per grid pixel
    factor = max(1, int(scale))  # block-reduce first so that every frame pixel counts (no aliasing)
    small = _block_mean(counts, factor) if factor > 1 else counts
    c = (size - 1) / 2
    v, u = np.indices((size, size), dtype=np.float64)
    du, dv = (u - c) * scale, (v - c) * scale
    if g.rotation_deg:  # grid azimuth a shows the frame's azimuth a + rotation
        t = np.radians(g.rotation_deg)
        du, dv = du * np.cos(t) - dv * np.sin(t), du * np.sin(t) + dv * np.cos(t)
    if g.flip:
        du = -du
    x, y = g.cx + du, g.cy + dv
    h, w = counts.shape
    sky = (np.hypot(u - c, v - c) < size / 2) & (x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5)
    if g.crop is not None:
        x0, x1, y0, y1 = g.crop
        sky &= (x >= x0 - 0.5) & (x < x1 - 0.5) & (y >= y0 - 0.5) & (y < y1 - 0.5)
    if camera.horizon is not None:
        f = camera.mask_factor
        mi = np.clip(np.round((y + 0.5) / f - 0.5).astype(int), 0, camera.horizon.shape[0] - 1)
        mj = np.clip(np.round((x + 0.5) / f - 0.5).astype(int), 0, camera.horizon.shape[1] - 1)
        sky &= ~camera.horizon[mi, mj]
    values = map_coordinates(small, [(y + 0.5) / factor - 0.5, (x + 0.5) / factor - 0.5], order=1, mode="nearest")
    return np.where(sky, values, 0.0), sky, size


def _reduce(image: np.ndarray, size: int, mode: str) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    t = torch.as_tensor(image, dtype=torch.float32)[None, None]
    pooled = F.adaptive_avg_pool2d(t, size) if mode == "mean" else F.adaptive_max_pool2d(t, size)
    return pooled[0, 0].numpy()


def preprocess_frame(counts: np.ndarray, exptime_s: float, image_size: int,
                     camera: Camera | CameraGeometry | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(network input (3, S, S) float32 in [0, 1], features (33 * 4 + 2,) float32) of one frame's counts.

    ``camera`` places the sky grid (None: the circle found in this frame alone). Everything after the resampling
    happens on a grid of at most FEATURE_GRID_PX pixels across the horizon, so a 1,400-pixel camera and a 480-pixel
    one are stretched, pooled and measured alike."""
    from scipy.ndimage import gaussian_filter, maximum_filter

    if camera is None:
        circle = find_sky_circle(counts)
        camera = Camera(CameraGeometry(circle.cx, circle.cy, circle.radius, source="per_frame"))
    elif isinstance(camera, CameraGeometry):
        camera = Camera(camera)
    g = camera.geometry
    sub = counts[::4, ::4]
    rows, cols = np.indices(sub.shape)
    outside = np.hypot(cols * 4 - g.cx, rows * 4 - g.cy) > g.radius * 1.02
    pedestal = np.percentile(sub[outside], 1) if outside.sum() > 100 else np.percentile(sub, 0.5)
    values, inside, grid = sky_grid(counts, camera)
    rate = np.where(inside, (values - pedestal) / exptime_s, 0.0)
    if inside.sum() < 50:
        raise DataFormatError("frame", "the camera geometry leaves almost no sky in this frame")
    lo, hi = np.percentile(rate[inside], STRETCH_PERCENTILES)
    stretched = np.arcsinh(ASINH_SOFTENING * np.clip((rate - lo) / max(hi - lo, 1e-9), 0, None))
    stretched = np.where(inside, np.clip(stretched / np.arcsinh(ASINH_SOFTENING), 0, 1), 0.0)
    # the third channel keeps what the per-frame stretch removes: how bright the sky is (twilight or an overcast
    # lit by the Moon or a town vs a dark sky), log10 of the rate in ADU/s mapped from [-1, 4] to [0, 1]
    log_rate = np.where(inside, np.clip((np.log10(np.clip(rate, 0.1, None)) + 1) / 5, 0, 1), 0.0)
    image = np.stack([_reduce(stretched, image_size, "mean"), _reduce(stretched, image_size, "max"),
                      _reduce(log_rate, image_size, "mean")])

    c = (grid - 1) / 2
    sub = np.where(inside, subregion_map(rate.shape, c, c, grid / 2), -1)
    # the background is smoothed over sky pixels only, so the dark horizon mask does not leak into it
    weight = gaussian_filter(inside.astype(np.float64), 3.0)
    background = np.where(inside, gaussian_filter(rate, 3.0) / np.maximum(weight, 1e-6), 0.0)
    residual = rate - background
    noise = 1.4826 * np.median(np.abs(residual[inside] - np.median(residual[inside])))
    peaks = (residual == maximum_filter(residual, 3)) & (residual > STAR_THRESHOLD_SIGMA * max(noise, 1e-9)) & inside
    deg2_per_px = (90.0 / (grid / 2)) ** 2
    n_px = np.bincount(sub[sub >= 0], minlength=N_SUBREGIONS).astype(np.float64)
    n_stars = np.bincount(sub[peaks & (sub >= 0)], minlength=N_SUBREGIONS)
    feats = np.zeros((N_SUBREGIONS, len(FEATURE_NAMES)))
    feats[:, 0] = 100 * n_stars / np.maximum(n_px * deg2_per_px, 1e-9)
    log_bkg = np.log10(np.clip(background, 1e-3, None))
    for k in range(N_SUBREGIONS):
        sel = sub == k
        if sel.any():
            feats[k, 1] = np.median(log_bkg[sel])
            feats[k, 2] = np.std(background[sel]) / max(abs(np.median(background[sel])), 1e-6)
            feats[k, 3] = np.median(stretched[sel])
    frame_level = [np.log10(exptime_s), np.log10(max(float(np.median(rate[inside])), 1e-3))]
    return image.astype(np.float32), np.concatenate([feats.ravel(), frame_level]).astype(np.float32)


def feature_names() -> list[str]:
    return [f"r{k:02d}_{name}" for k in range(N_SUBREGIONS) for name in FEATURE_NAMES] + [
        "log_exptime_s", "log_median_rate_adu_s"]


def subregion_feature_rows(features: np.ndarray) -> np.ndarray:
    """(N, 33, F_sub + 5): each sub-region's own features, its ring and sector position, and the frame's means of
    each feature plus its frame-level features: the per-sub-region rows Mommert's boosting classifies."""
    n = len(features)
    per_region = features[:, : N_SUBREGIONS * len(FEATURE_NAMES)].reshape(n, N_SUBREGIONS, len(FEATURE_NAMES))
    frame_means = np.repeat(per_region.mean(axis=1, keepdims=True), N_SUBREGIONS, axis=1)
    frame_level = np.repeat(features[:, None, N_SUBREGIONS * len(FEATURE_NAMES):], N_SUBREGIONS, axis=1)
    index = np.arange(N_SUBREGIONS)
    position = np.broadcast_to(np.stack([subregion_ring(index), np.maximum(index - 1, 0) % 8], axis=1),
                               (n, N_SUBREGIONS, 2))
    return np.concatenate([per_region, position, frame_means, frame_level], axis=2).astype(np.float32)


# --- reading a labelled collection -----------------------------------------------------------------------------

@dataclass
class _Entry:
    path: Path
    label: str | None
    cloud_fraction: float = float("nan")
    exptime_s: float | None = None
    flags: np.ndarray | None = None
    camera: str = ""
    flag_margin: float = float("nan")


def _parse_flags(source: Path, text: str, where: str) -> np.ndarray:
    chars = text.replace(" ", "")
    if len(chars) != N_SUBREGIONS or set(chars) - {"0", "1"}:
        raise DataFormatError(source, f"{where}: subregion_flags must be {N_SUBREGIONS} characters 0/1, got {text!r}")
    return np.array([int(ch) for ch in chars], dtype=np.float32)


def _read_flag_table(path: Path) -> dict[str, np.ndarray]:
    """cloudynight's ``subregion_flags.dat``: a frame id, then 33 flags, per line."""
    table = {}
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        table[parts[0]] = _parse_flags(path, "".join(parts[1:]), f"line {i}")
    return table


def _stem(path: Path) -> str:
    name = path.name
    for suffix in sorted(FRAME_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _manifest_entries(manifest: Path) -> list[_Entry]:
    from astrobench.core.io import is_number

    try:
        with open(manifest, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataFormatError(manifest, f"cannot read the manifest ({err})") from None
    if not rows:
        raise DataFormatError(manifest, "the manifest lists no frames")
    columns = set(rows[0])
    missing = {"file", "label"} - columns
    if missing:
        raise DataFormatError(manifest, f"missing column(s) {', '.join(sorted(missing))}; a manifest needs file,label")
    flag_file = manifest.parent / "subregion_flags.dat"
    flag_table = _read_flag_table(flag_file) if flag_file.exists() and "subregion_flags" not in columns else {}
    entries, seen = [], set()
    for i, row in enumerate(rows, start=2):
        where = f"line {i}"
        if not row["file"]:
            raise DataFormatError(manifest, f"{where}: empty file name")
        if row["file"].strip() == "file" and (row["label"] or "").strip() == "label":
            raise DataFormatError(manifest, f"{where} repeats the header")
        listed = manifest.parent / row["file"]
        try:
            path = listed.resolve()
        except (RuntimeError, OSError):  # Python 3.11 raises RuntimeError on a symlink loop
            path = listed
        if listed.is_symlink() and not listed.exists():
            raise DataFormatError(manifest, f"{where}: frame {row['file']} is a symbolic link that loops or leads "
                                  "nowhere")
        if path in seen:
            raise DataFormatError(manifest, f"{where}: {row['file']} is listed twice")
        seen.add(path)
        if not path.is_file():
            raise DataFormatError(manifest, f"{where}: frame {row['file']} not found")
        entry = _Entry(path, (row["label"] or "").strip() or None, camera=(row.get("camera") or "").strip())
        for key in ("cloud_fraction", "exptime_s", "flag_margin"):
            value = (row.get(key) or "").strip()
            if value:
                if not is_number(value) or not np.isfinite(float(value)):
                    raise DataFormatError(manifest, f"{where}: {key} must be a number, got {value!r}")
                setattr(entry, key, float(value))
        if entry.exptime_s is not None and not entry.exptime_s > 0:
            raise DataFormatError(manifest, f"{where}: exptime_s must be positive, got {entry.exptime_s}")
        if not 0 <= entry.cloud_fraction <= 1 and not np.isnan(entry.cloud_fraction):
            raise DataFormatError(manifest, f"{where}: cloud_fraction must be in [0, 1], got {entry.cloud_fraction}")
        if (row.get("subregion_flags") or "").strip():
            entry.flags = _parse_flags(manifest, row["subregion_flags"], where)
        elif flag_table:
            entry.flags = flag_table.get(_stem(path))
        entries.append(entry)
    return entries


def _folder_entries(folder: Path) -> list[_Entry]:
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    entries = [_Entry(f, c.name) for c in classes for f in sorted(c.iterdir()) if is_frame_file(f)]
    if not entries:  # a plain folder of frames: no labels (for predict)
        entries = [_Entry(f, None) for f in sorted(folder.iterdir()) if is_frame_file(f)]
    if not entries:
        raise DataFormatError(folder, "no manifest.csv, class folders or frames (FITS/PNG/JPEG) found here")
    return entries


def _check_labels(source: Path, entries: list[_Entry]) -> None:
    """A label a letter or two away from a known class (``overcst``) beside labels of the known classes is a typo,
    not a class of its own: named before any training. (Labels of another class set, e.g. clear/cloudy, stay.)"""
    import difflib

    labels = [e.label for e in entries if e.label is not None]
    if not set(labels) & set(KNOWN_CLASSES):
        return
    for label in sorted(set(labels) - set(KNOWN_CLASSES)):
        close = difflib.get_close_matches(label, KNOWN_CLASSES, n=1, cutoff=0.75)
        if close:
            first = next(e for e in entries if e.label == label)
            raise DataFormatError(source, f"label {label!r} (frame {first.path.name}, {labels.count(label)} frame(s))"
                                  f" looks like a typo of {close[0]!r}; the classes are {', '.join(KNOWN_CLASSES)}")


def _class_order(labels: list[str]) -> list[str]:
    found = sorted(set(labels))
    if set(found) <= set(KNOWN_CLASSES):
        return list(KNOWN_CLASSES)
    return found


def load_frames(path: str | Path, image_size: int = 64, class_names: list[str] | None = None,
                require_labels: bool = True, progress: bool = False, n_jobs: int = 1,
                camera: str | CameraGeometry = "auto") -> FrameSet:
    """Read and preprocess every frame of a manifest (or a folder holding ``manifest.csv``) or of class folders.

    ``camera``: ``auto`` estimates each camera's geometry and horizon mask from the median of its frames (the frames
    of a manifest's ``camera`` column, else all frames, which must then share one size); a CameraGeometry (a preset
    or a given circle) is used for every frame; ``per_frame`` finds the circle in each frame alone.
    ``class_names`` fixes the classes (a model's, when evaluating on other frames); a label outside them is an
    error. Without it the classes are clear/partly_cloudy/overcast when the labels are among those, else the sorted
    labels found. Frames without an exposure time (PNG/JPEG, no manifest column) count as 1 s. ``n_jobs`` processes
    preprocess the frames.
    """
    from rich.progress import track

    from astrobench.tasks.allsky.geometry import parse_camera

    path = Path(path)
    if not path.exists():
        raise DataFormatError(path, "no such file or folder")
    if path.is_dir() and (path / "manifest.csv").exists():
        path = path / "manifest.csv"
    entries = _manifest_entries(path) if path.is_file() else _folder_entries(path)
    labels = [e.label for e in entries]
    if require_labels and any(lab is None for lab in labels):
        i = labels.index(None)
        raise DataFormatError(path, f"frame {entries[i].path.name} has no label")
    if not class_names:
        _check_labels(path, entries)
    names = list(class_names) if class_names else _class_order([lab for lab in labels if lab is not None])
    unknown = sorted({lab for lab in labels if lab is not None and lab not in names})
    if unknown:
        raise DataFormatError(path, f"label(s) {', '.join(unknown)} not among the classes {', '.join(names)}")
    camera = parse_camera(camera)
    with executor(n_jobs, n_chunks=len(entries) // 25) as pool:
        cameras = _cameras(path, entries, camera, pool)
        jobs = [(str(e.path), e.exptime_s, image_size, cameras.get(e.camera)) for e in entries]
        done = list(track(pool.map(_preprocess_file, jobs, chunksize=25), total=len(jobs),
                          description="allsky: reading frames", disable=not progress, transient=True))
    images, features, exptimes = (list(col) for col in zip(*done))
    flags = np.stack([e.flags if e.flags is not None else np.full(N_SUBREGIONS, np.nan, np.float32) for e in entries])
    cloud = np.array([e.cloud_fraction for e in entries])
    has = ~np.isnan(flags).any(axis=1)
    cloud[np.isnan(cloud) & has] = flags[np.isnan(cloud) & has].mean(axis=1)
    used = {key: {**cam.geometry.to_dict(), "horizon_fraction": round(cam.horizon_fraction(), 4)}
            for key, cam in cameras.items() if cam is not None}
    if camera == "per_frame":
        used = {"": {"source": "per_frame"}}
    return FrameSet(np.stack(images), np.stack(features), np.array([names.index(lab) if lab is not None else -1
                                                                     for lab in labels]),
                    flags.astype(np.float32), cloud, np.array(exptimes), [str(e.path) for e in entries], names,
                    str(path), feature_names(), used, np.array([e.flag_margin for e in entries]),
                    [e.camera for e in entries])


def _cameras(source: Path, entries: list[_Entry], camera, pool) -> dict[str, Camera | None]:
    """The geometry of each camera group (a manifest's ``camera`` column; one group otherwise): every frame of a
    group must have one size; the geometry is checked against it, and estimated from the stack with ``auto``."""
    if camera == "per_frame":
        return {e.camera: None for e in entries}
    groups: dict[str, list[_Entry]] = {}
    for e in entries:
        groups.setdefault(e.camera, []).append(e)
    shapes = dict(zip((str(e.path) for e in entries), pool.map(frame_shape, [e.path for e in entries], chunksize=50)))
    out: dict[str, Camera | None] = {}
    for key, members in groups.items():
        first = members[0]
        shape = shapes[str(first.path)]
        for e in members[1:]:
            if shapes[str(e.path)] != shape:
                (h1, w1), (h2, w2) = shape, shapes[str(e.path)]
                raise DataFormatError(source, f"frames of different cameras: {first.path.name} is {w1} x {h1} px, "
                                      f"{e.path.name} is {w2} x {h2} px; give each camera its own folder, a camera "
                                      "column in manifest.csv, or --set camera=per_frame")
        where = first.path if len(members) == 1 else source
        if isinstance(camera, CameraGeometry):
            camera.check(shape, where)  # before reading any pixels
        step = max(1, len(members) // STACK_FRAMES)
        stacked = [m.path for m in members[::step][:STACK_FRAMES]]
        members = list(pool.map(_read_stack_member, stacked))
        if isinstance(camera, CameraGeometry):  # the circle is given; the horizon mask still comes from the frames
            f = members[0][1]
            stack = np.median([m for m, _ in members], axis=0)
            circle = SkyCircle((camera.cx + 0.5) / f - 0.5, (camera.cy + 0.5) / f - 0.5, camera.radius / f)
            out[key] = Camera(camera, horizon_mask(stack, circle), f)
        else:
            out[key] = estimate_camera(members, where, reduced=True, frame_shape=shape)
    return out


def _preprocess_file(job) -> tuple[np.ndarray, np.ndarray, float]:
    path, manifest_exptime, image_size, camera = job
    counts, header_exptime = read_frame(path)
    exptime = manifest_exptime or header_exptime or 1.0
    try:
        image, feats = preprocess_frame(counts, exptime, image_size, camera)
    except DataFormatError as err:
        raise DataFormatError(path, err.problem) from None
    return image, feats, exptime


def split_indices(labels: np.ndarray, fractions: tuple[float, float, float], seed: int,
                  groups: list[str] | np.ndarray | None = None) -> list[np.ndarray]:
    """Train/validation/test indices. Without ``groups``: stratified by class, every frame its own object. With
    ``groups`` (camera ids): whole cameras go to one side, so validation and test measure frames of cameras the
    models never saw (their horizon, lens and detector)."""
    rng = np.random.default_rng([seed, 5])
    parts: list[list[int]] = [[], [], []]
    if groups is not None:
        groups = np.asarray(groups)
        names = rng.permutation(np.unique(groups))
        cut = np.round(np.cumsum(fractions)[:2] * len(names)).astype(int)
        for part, chosen in zip(parts, np.split(names, cut)):
            part.extend(np.flatnonzero(np.isin(groups, chosen)).tolist())
        return [np.sort(np.array(p, dtype=int)) for p in parts]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        cut = np.round(np.cumsum(fractions)[:2] * len(idx)).astype(int)
        for part, chosen in zip(parts, np.split(idx, cut)):
            part.extend(chosen.tolist())
    return [np.sort(np.array(p, dtype=int)) for p in parts]
