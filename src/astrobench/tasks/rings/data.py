"""Reader and writer of the tutorial's ring format, with validation at the boundary.

Formats
-------
- **Folder** (the tutorial's): ``ring_image_{i}.png`` (square, 8-bit grey, 0 or 255) for i = 0..N-1 plus
  ``labels.txt`` (one integer per line: the number of rings of image i) and/or ``labels.json`` (a list of
  ``{"center": [x, y], "radius": r, "thickness": t, "deformation": d}`` in pixels; x = column, y = row).
- **npz** (fast array format): ``images`` (N, S, S) uint8, and ``n_rings`` (N,) int and/or ``params``
  (N, 5) float64 with columns x, y, radius, thickness, deformation.

A folder holding ``n_ring/`` and ``single_ring/`` sub-folders (like the school's reference sample) loads as
both. Every problem stops with a :class:`~astrobench.core.io.DataFormatError` naming the file.
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from astrobench.core.io import (
    ConfigError,
    DataFormatError,
    atomic_path,
    write_json_atomic,
    write_text_atomic,
)
from astrobench.tasks.rings.simulate import PARAM_NAMES

_IMAGE_NAME = re.compile(r"^ring_image_(\d+)\.png$")


@dataclass
class RingSet:
    """Ring images with their labels.

    images : (N, S, S) uint8 in [0, 255].
    n_rings : (N,) int number of rings, or None (single-ring sets).
    params : (N, 5) float64 x, y, radius, thickness, deformation in pixels, or None (n-ring sets).
    """

    images: np.ndarray
    n_rings: np.ndarray | None = None
    params: np.ndarray | None = None
    source: str = "memory"

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def subset(self, index: np.ndarray) -> RingSet:
        return RingSet(
            self.images[index],
            None if self.n_rings is None else self.n_rings[index],
            None if self.params is None else self.params[index],
            self.source,
        )

    def as_float(self) -> np.ndarray:
        """(N, 1, S, S) float32 images scaled to [0, 1], as the tutorial's loaders normalise them."""
        return (self.images.astype(np.float32) / 255.0)[:, None]


def _number(value: float) -> int | float:
    """Integers as the tutorial writes them (centre and radius are whole pixels there), other values as floats."""
    return int(value) if float(value).is_integer() else float(value)


def write_rings(ring_set: RingSet, out: str | Path, format: str = "png") -> Path:
    """Write ``ring_set`` as a tutorial folder (``png``) or one ``npz`` file; never overwrites data."""
    out = Path(out)
    if format == "png" and out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder; choose a new --out")
    if format == "png":
        from PIL import Image

        if out.exists() and any(out.iterdir()):
            raise ConfigError(f"{out}: folder exists and is not empty; choose a new --out")
        out.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(ring_set.images):
            Image.fromarray(img, mode="L").save(out / f"ring_image_{i}.png")
        if ring_set.n_rings is not None:
            write_text_atomic(out / "labels.txt", "".join(f"{int(n)}\n" for n in ring_set.n_rings))
        if ring_set.params is not None:
            labels = [
                {"center": [_number(p[0]), _number(p[1])], "radius": _number(p[2]), "thickness": float(p[3]),
                 "deformation": float(p[4])}
                for p in ring_set.params
            ]
            write_json_atomic(out / "labels.json", labels)
        return out
    if format == "npz":
        path = out if out.suffix == ".npz" else out / "rings.npz"
        if path.exists():
            raise ConfigError(f"{path}: file exists; choose a new --out")
        arrays = {"images": ring_set.images}
        if ring_set.n_rings is not None:
            arrays["n_rings"] = ring_set.n_rings
        if ring_set.params is not None:
            arrays["params"] = ring_set.params
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)
        return path
    raise ConfigError(f"unknown format {format!r} for rings; use 'png' or 'npz'")


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            if img.mode not in ("L", "1", "P", "RGB", "RGBA", "LA"):
                raise DataFormatError(path, f"unsupported PNG mode {img.mode}")
            arr = np.asarray(img.convert("L"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataFormatError(path, f"corrupt or unreadable image ({err})") from None
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise DataFormatError(path, f"image must be square, got {arr.shape[1]}x{arr.shape[0]}")
    return arr


def _read_n_rings(path: Path) -> np.ndarray:
    values = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            n = int(line.strip())
        except ValueError:
            raise DataFormatError(path, f"line {lineno}: expected an integer number of rings, "
                                        f"got {line.strip()!r}") from None
        if n < 1:
            raise DataFormatError(path, f"line {lineno}: number of rings must be >= 1, got {n}")
        values.append(n)
    if not values:
        raise DataFormatError(path, "no labels")
    return np.asarray(values, dtype=np.int64)


def _read_params(path: Path) -> np.ndarray:
    try:
        labels = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataFormatError(path, f"not valid JSON ({err})") from None
    if not isinstance(labels, list) or not labels:
        raise DataFormatError(path, "expected a non-empty list of ring labels")
    rows = []
    for i, lab in enumerate(labels):
        try:
            cx, cy = lab["center"]
            row = [float(cx), float(cy), float(lab["radius"]), float(lab["thickness"]), float(lab["deformation"])]
        except (KeyError, TypeError, ValueError):
            raise DataFormatError(
                path, f"entry {i}: expected {{'center': [x, y], 'radius', 'thickness', 'deformation'}} numbers"
            ) from None
        rows.append(row)
    return _check_params(path, np.asarray(rows, dtype=np.float64))


def _check_params(path: Path, params: np.ndarray) -> np.ndarray:
    """The same label checks for every format: finite, radius > 0, thickness and deformation >= 0."""
    bad = ~np.isfinite(params).all(axis=1)
    if bad.any():
        raise DataFormatError(path, f"entry {int(np.argmax(bad))}: NaN or infinite label")
    if (params[:, 2] <= 0).any():
        raise DataFormatError(path, f"entry {int(np.argmax(params[:, 2] <= 0))}: radius must be > 0")
    if (params[:, 3:] < 0).any():
        raise DataFormatError(path, f"entry {int(np.argmax((params[:, 3:] < 0).any(axis=1)))}: thickness and "
                                    "deformation must be >= 0")
    return params


def _load_folder(folder: Path, require_labels: bool = True) -> RingSet:
    txt, js = folder / "labels.txt", folder / "labels.json"
    indices = sorted(int(m.group(1)) for p in folder.iterdir() if (m := _IMAGE_NAME.match(p.name)))
    if not txt.exists() and not js.exists() and (require_labels or not indices):
        raise DataFormatError(folder, "no labels.txt or labels.json (and no n_ring/ or single_ring/ sub-folder)")
    n_rings = _read_n_rings(txt) if txt.exists() else None
    params = _read_params(js) if js.exists() else None
    if n_rings is not None and params is not None and len(n_rings) != len(params):
        raise DataFormatError(folder, f"labels.txt has {len(n_rings)} labels but labels.json has {len(params)}")
    n = len(n_rings) if n_rings is not None else len(params) if params is not None else len(indices)
    if indices != list(range(n)):
        missing = sorted(set(range(n)) - set(indices))
        labels = txt if n_rings is not None else js
        if not indices:
            raise DataFormatError(folder, f"{labels.name} has {n} labels but there are no ring_image_{{i}}.png "
                                  "images")
        if missing and indices == list(range(len(indices))):  # the images are complete, the labels run on
            raise DataFormatError(labels, f"{n} labels but {len(indices)} images (ring_image_0 to "
                                  f"ring_image_{len(indices) - 1}): {n - len(indices)} label(s) too many, or the "
                                  "last images are missing")
        if missing:
            raise DataFormatError(folder / f"ring_image_{missing[0]}.png",
                                  f"missing: {len(indices)} images for {n} labels")
        raise DataFormatError(folder, f"labels do not match the images: {n} labels but {len(indices)} images")
    first = _read_png(folder / "ring_image_0.png")
    images = np.empty((n,) + first.shape, dtype=np.uint8)
    images[0] = first
    for i in range(1, n):
        path = folder / f"ring_image_{i}.png"
        img = _read_png(path)
        if img.shape != first.shape:
            raise DataFormatError(path, f"image size {img.shape[1]}x{img.shape[0]} differs from "
                                        f"ring_image_0.png ({first.shape[1]}x{first.shape[0]})")
        images[i] = img
    return RingSet(images, n_rings, params, source=str(folder))


def _load_npz(path: Path, require_labels: bool = True) -> RingSet:
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DataFormatError(path, f"corrupt or unreadable npz ({err})") from None
    if "images" not in arrays:
        raise DataFormatError(path, "no 'images' array")
    images = arrays["images"]
    if images.ndim != 3 or images.shape[1] != images.shape[2] or len(images) == 0:
        raise DataFormatError(path, f"'images' must be (N, S, S) with N >= 1, got {images.shape}")
    if not np.issubdtype(images.dtype, np.integer) or images.min() < 0 or images.max() > 255:
        raise DataFormatError(path, "'images' must be integers in [0, 255]")
    n_rings, params = arrays.get("n_rings"), arrays.get("params")
    if n_rings is None and params is None and require_labels:
        raise DataFormatError(path, "no labels: need 'n_rings' and/or 'params'")
    for name, lab in (("n_rings", n_rings), ("params", params)):
        if lab is not None and len(lab) != len(images):
            raise DataFormatError(path, f"labels do not match the images: {len(lab)} '{name}' for {len(images)} images")
    if params is not None and (params.ndim != 2 or params.shape[1] != len(PARAM_NAMES)):
        raise DataFormatError(path, f"'params' must be (N, 5): {', '.join(PARAM_NAMES)}")
    if params is not None:
        _check_params(path, params.astype(np.float64))
    if n_rings is not None and (n_rings < 1).any():
        raise DataFormatError(path, "'n_rings' must be >= 1")
    return RingSet(images.astype(np.uint8), n_rings, None if params is None else params.astype(np.float64),
                   source=str(path))


def load_rings(path: str | Path, require_labels: bool = True) -> RingSet:
    """Load one ring set (a tutorial folder or an npz file), validated; see the module docstring.

    ``require_labels=False`` accepts images without labels (for ``predict``).
    """
    path = Path(path)
    if not path.exists():
        raise DataFormatError(path, "not found")
    if path.is_dir():
        return _load_folder(path, require_labels)
    if path.suffix == ".npz":
        return _load_npz(path, require_labels)
    raise DataFormatError(path, "expected a folder of ring_image_{i}.png with labels, or an .npz file")


def load_ring_collection(path: str | Path) -> dict[str, RingSet]:
    """Load the sets a path holds: ``{"n_ring": ..., "single_ring": ...}`` (one or both keys).

    A set whose labels carry the number of rings is filed under ``n_ring``; one with ring parameters under
    ``single_ring``. A folder with ``n_ring/`` and/or ``single_ring/`` sub-folders loads each.
    """
    path = Path(path)
    subs = [path / name for name in ("n_ring", "single_ring")] if path.is_dir() else []
    sets = [load_rings(p) for p in subs if p.is_dir()] or [load_rings(path)]
    collection: dict[str, RingSet] = {}
    for s in sets:
        if s.n_rings is not None:
            collection["n_ring"] = RingSet(s.images, s.n_rings, None, s.source)
        if s.params is not None:
            collection["single_ring"] = RingSet(s.images, None, s.params, s.source)
    return collection


def split_indices(n: int, fractions, seed: int) -> tuple[np.ndarray, ...]:
    """Seeded random train/val/test index split; every image is its own object, so nothing leaks.

    ``fractions`` are three non-negative numbers (train, val, test) summing to 1.
    """
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ConfigError(f"data_split must be three non-negative fractions summing to 1, got {list(fractions)}")
    if n < 3:
        raise ConfigError(f"need at least 3 images to split, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(fractions[1] * n)))
    n_test = max(1, int(round(fractions[2] * n)))
    if n - n_val - n_test < 1:
        raise ConfigError(f"data_split {list(fractions)} leaves no training images out of {n}")
    return order[: n - n_val - n_test], order[n - n_val - n_test : n - n_test], order[n - n_test :]
