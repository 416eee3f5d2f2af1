"""Reading labelled all-sky frames (a manifest or one folder per class), finding the fisheye circle, and turning
each frame into the network input and the hand-made features of Mommert (2020).

The formats (docs/tasks/allsky.md):

- ``manifest.csv`` with columns ``file,label`` (file relative to the CSV); optional ``cloud_fraction``,
  ``exptime_s`` and ``subregion_flags`` (33 characters 0/1, Mommert's sub-region order, see geometry.py). Flags may
  instead come from a ``subregion_flags.dat`` beside the manifest (cloudynight's form: the frame's file stem, then 33
  flags).
- or a folder with one sub-folder per class (``clear/``, ``overcast/``, ...) of frames.

Frames are FITS (``.fits``, ``.fit``, also ``.fits.gz`` and ``.fits.bz2``; 16-bit with BZERO as cameras write them;
the exposure time from ``EXPTIME``) or PNG/JPEG (8 or 16 bit; colour is averaged to grey).

Preprocessing of each frame: the pedestal (the darkest percent of the pixels outside the sky circle) is subtracted
and the counts divided by the exposure time; the fisheye circle is found from the frame (convex hull of the bright
disc, then a least-squares circle, so trees on the horizon do not pull it in); the square around the circle is cut
out, stretched with a percentile/asinh stretch inside the circle (outside set to 0), and reduced to
``image_size`` pixels twice: a block mean (clouds and gradients) and a block maximum (stars); a third channel is the
log of the exposure-normalised rate (how bright the sky is, which the per-frame stretch removes).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from astrobench.core.io import DataFormatError
from astrobench.core.parallel import process_pool
from astrobench.tasks.allsky.geometry import N_SUBREGIONS, subregion_map, subregion_ring

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

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def has_flags(self) -> np.ndarray:
        return ~np.isnan(self.flags).any(axis=1)

    def subset(self, idx) -> "FrameSet":
        idx = np.asarray(idx) if not isinstance(idx, slice) else idx
        pick = (lambda a: a[idx])
        files = list(np.asarray(self.files, dtype=object)[idx])
        return FrameSet(pick(self.images), pick(self.features), pick(self.labels), pick(self.flags),
                        pick(self.cloud_fraction), pick(self.exptime_s), files, self.class_names, self.source,
                        self.feature_names)

    def save(self, path: Path) -> None:
        np.savez(path, images=self.images.astype(np.float16), features=self.features, labels=self.labels,
                 flags=self.flags, cloud_fraction=self.cloud_fraction, exptime_s=self.exptime_s,
                 files=np.asarray(self.files), class_names=np.asarray(self.class_names), source=self.source,
                 feature_names=np.asarray(self.feature_names))

    @classmethod
    def load(cls, path: Path) -> "FrameSet":
        with np.load(path) as z:
            return cls(z["images"].astype(np.float32), z["features"], z["labels"], z["flags"], z["cloud_fraction"],
                       z["exptime_s"], [str(f) for f in z["files"]], [str(c) for c in z["class_names"]],
                       str(z["source"]), [str(f) for f in z["feature_names"]])


# --- reading one frame ---------------------------------------------------------------------------------------

def is_frame_file(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(FRAME_SUFFIXES)


def read_frame(path: str | Path) -> tuple[np.ndarray, float | None]:
    """(counts (H, W) float64, exposure time in s or None) from a FITS, PNG or JPEG frame."""
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
                data = np.asarray(hdu.data, dtype=np.float64)  # astropy applies BZERO/BSCALE
                header = hdu.header
            exptime = next((float(header[k]) for k in ("EXPTIME", "EXPOSURE", "EXP_TIME") if k in header), None)
        else:
            from PIL import Image

            with Image.open(path) as im:
                data = np.asarray(im, dtype=np.float64)
            exptime = None
    except DataFormatError:
        raise
    except Exception as err:  # astropy, PIL and the decompressors raise many kinds
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataFormatError(path, f"cannot read this frame ({first})") from None
    if data.ndim == 3:
        data = data[..., :3].mean(axis=-1) if data.shape[-1] in (3, 4) else data[0]
    if data.ndim != 2 or min(data.shape) < 32:
        raise DataFormatError(path, f"expected a 2-D image of at least 32 x 32 pixels, got shape {data.shape}")
    if not np.isfinite(data).all():
        bad = np.count_nonzero(~np.isfinite(data))
        raise DataFormatError(path, f"{bad} pixels are NaN or infinite")
    if exptime is not None and not exptime > 0:
        raise DataFormatError(path, f"EXPTIME must be positive, got {exptime}")
    return data, exptime


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
        return factor, gaussian_filter(np.log10(np.clip(small - np.percentile(small, 1), 1, None)), 1.0)

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
    factor, log_image = log_reduced(160)
    scale = coarse_factor / factor  # coarse -> fine pixel coordinates
    cx, cy, r = (cx + 0.5) * scale - 0.5, (cy + 0.5) * scale - 0.5, r * scale
    m = min(log_image.shape)
    for step in (0.02 * m, 0.005 * m):
        offsets = step * np.arange(-3, 4)
        cx, cy, r, score = best(log_image, cx + offsets, cy + offsets, r + offsets)
    if not score > 0.05:
        raise DataFormatError("frame", "no fisheye sky circle found: no circle where the frame gets darker outward")
    # block pixel i covers frame pixels [i f, (i + 1) f): its centre is at i f + (f - 1) / 2
    return SkyCircle(cx * factor + (factor - 1) / 2, cy * factor + (factor - 1) / 2, (r + 0.5) * factor)


# --- preprocessing -------------------------------------------------------------------------------------------

def _crop_square(image: np.ndarray, circle: SkyCircle, fill: float) -> np.ndarray:
    """The square of side 2R around the circle, padded with ``fill`` where it leaves the frame."""
    half = int(np.ceil(circle.radius))
    x0, y0 = int(round(circle.cx)) - half, int(round(circle.cy)) - half
    out = np.full((2 * half, 2 * half), fill, dtype=np.float64)
    ys, xs = slice(max(y0, 0), min(y0 + 2 * half, image.shape[0])), slice(max(x0, 0), min(x0 + 2 * half, image.shape[1]))
    out[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0] = image[ys, xs]
    return out


def _reduce(image: np.ndarray, size: int, mode: str) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    t = torch.as_tensor(image, dtype=torch.float32)[None, None]
    pooled = F.adaptive_avg_pool2d(t, size) if mode == "mean" else F.adaptive_max_pool2d(t, size)
    return pooled[0, 0].numpy()


def preprocess_frame(counts: np.ndarray, exptime_s: float, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(network input (3, S, S) float32 in [0, 1], features (33 * 4 + 2,) float32) of one frame's counts.

    Everything after the crop happens on a grid of at most FEATURE_GRID_PX pixels across the circle, so a
    1,400-pixel camera and the simulator's 344-pixel frames are stretched, pooled and measured alike."""
    from scipy.ndimage import gaussian_filter, maximum_filter

    circle = find_sky_circle(counts)
    rows, cols = np.indices(counts.shape)
    outside = np.hypot(cols - circle.cx, rows - circle.cy) > circle.radius
    pedestal = np.percentile(counts[outside], 1) if outside.sum() > 100 else np.percentile(counts, 0.5)
    crop = _crop_square((counts - pedestal) / exptime_s, circle, fill=0.0)
    grid = min(FEATURE_GRID_PX, crop.shape[0])
    rate = _reduce(crop, grid, "mean").astype(np.float64)
    c = (grid - 1) / 2
    yy, xx = np.indices(rate.shape)
    inside = np.hypot(xx - c, yy - c) < grid / 2 - 0.5
    lo, hi = np.percentile(rate[inside], STRETCH_PERCENTILES)
    stretched = np.arcsinh(ASINH_SOFTENING * np.clip((rate - lo) / max(hi - lo, 1e-9), 0, None))
    stretched = np.where(inside, np.clip(stretched / np.arcsinh(ASINH_SOFTENING), 0, 1), 0.0)
    # the third channel keeps what the per-frame stretch removes: how bright the sky is (twilight or an overcast
    # lit by the Moon or a town vs a dark sky), log10 of the rate in ADU/s mapped from [-1, 4] to [0, 1]
    log_rate = np.where(inside, np.clip((np.log10(np.clip(rate, 0.1, None)) + 1) / 5, 0, 1), 0.0)
    image = np.stack([_reduce(stretched, image_size, "mean"), _reduce(stretched, image_size, "max"),
                      _reduce(log_rate, image_size, "mean")])

    sub = np.where(inside, subregion_map(rate.shape, c, c, grid / 2), -1)
    background = gaussian_filter(rate, 3.0)
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
        path = (manifest.parent / row["file"]).resolve()
        if path in seen:
            raise DataFormatError(manifest, f"{where}: {row['file']} is listed twice")
        seen.add(path)
        if not path.is_file():
            raise DataFormatError(manifest, f"{where}: frame {row['file']} not found")
        entry = _Entry(path, row["label"].strip() or None)
        for key in ("cloud_fraction", "exptime_s"):
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


def _class_order(labels: list[str]) -> list[str]:
    found = sorted(set(labels))
    if set(found) <= set(KNOWN_CLASSES):
        return list(KNOWN_CLASSES)
    return found


def load_frames(path: str | Path, image_size: int = 64, class_names: list[str] | None = None,
                require_labels: bool = True, progress: bool = False, n_jobs: int = 1) -> FrameSet:
    """Read and preprocess every frame of a manifest (or a folder holding ``manifest.csv``) or of class folders.

    ``class_names`` fixes the classes (a model's, when evaluating on other frames); a label outside them is an
    error. Without it the classes are clear/partly_cloudy/overcast when the labels are among those, else the sorted
    labels found. Frames without an exposure time (PNG/JPEG, no manifest column) count as 1 s. ``n_jobs`` processes
    preprocess the frames.
    """
    from rich.progress import track

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
    names = list(class_names) if class_names else _class_order([lab for lab in labels if lab is not None])
    unknown = sorted({lab for lab in labels if lab is not None and lab not in names})
    if unknown:
        raise DataFormatError(path, f"label(s) {', '.join(unknown)} not among the classes {', '.join(names)}")
    jobs = [(str(e.path), e.exptime_s, image_size) for e in entries]
    n_jobs = max(1, min(n_jobs, os.cpu_count() or 1, len(jobs) // 50))
    with process_pool(n_jobs) if n_jobs > 1 else SerialExecutor() as pool:
        done = list(track(pool.map(_preprocess_file, jobs, chunksize=25), total=len(jobs),
                          description="allsky: reading frames", disable=not progress, transient=True))
    images, features, exptimes = (list(col) for col in zip(*done))
    flags = np.stack([e.flags if e.flags is not None else np.full(N_SUBREGIONS, np.nan, np.float32) for e in entries])
    cloud = np.array([e.cloud_fraction for e in entries])
    has = ~np.isnan(flags).any(axis=1)
    cloud[np.isnan(cloud) & has] = flags[np.isnan(cloud) & has].mean(axis=1)
    return FrameSet(np.stack(images), np.stack(features), np.array([names.index(lab) if lab is not None else -1
                                                                     for lab in labels]),
                    flags.astype(np.float32), cloud, np.array(exptimes), [str(e.path) for e in entries], names,
                    str(path), feature_names())


def _preprocess_file(job: tuple[str, float | None, int]) -> tuple[np.ndarray, np.ndarray, float]:
    path, manifest_exptime, image_size = job
    counts, header_exptime = read_frame(path)
    exptime = manifest_exptime or header_exptime or 1.0
    try:
        image, feats = preprocess_frame(counts, exptime, image_size)
    except DataFormatError as err:
        raise DataFormatError(path, err.problem) from None
    return image, feats, exptime


class SerialExecutor:
    """The executor interface, in this process."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def map(self, fn, items, chunksize=1):
        return map(fn, items)


def split_indices(labels: np.ndarray, fractions: tuple[float, float, float], seed: int) -> list[np.ndarray]:
    """Train/validation/test indices, stratified by class (every frame is its own object: no frame is shared)."""
    rng = np.random.default_rng([seed, 5])
    parts: list[list[int]] = [[], [], []]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        cut = np.round(np.cumsum(fractions)[:2] * len(idx)).astype(int)
        for part, chunk in zip(parts, np.split(idx, cut)):
            part.extend(chunk.tolist())
    return [np.sort(np.array(p, dtype=int)) for p in parts]
