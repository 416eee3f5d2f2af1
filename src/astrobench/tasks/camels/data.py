"""CMD files on disk (``Maps_{Mtot,P}_{suite}_LH_z=0.00.npy`` and ``params_LH_{suite}.txt``): discovery and
validation, memory-mapped access (a 3.9 GB map file is never read whole), splits by simulation and the field
transforms the network sees."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from astrobench.core.io import ConfigError, DataFormatError, check_readable_file, write_json_atomic
from astrobench.core.task import Simulation, simulated
from astrobench.tasks.camels.simulate import (
    MAPS_PER_SIM,
    PARAM_NAMES,
    SIMULATOR_VERSION,
    SUITES,
    map_file,
    params_file,
    simulate,
)

# what a field option stacks as channels
FIELD_CHANNELS = {"mtot": ("mtot",), "mtot_nomean": ("mtot_nomean",), "p": ("p",), "mtot_p": ("mtot", "p")}
LOG_PARAMS = ("a_sn1", "a_agn1", "a_sn2", "a_agn2")  # learned and scored in log10


@dataclass
class Suite:
    """One suite's parameter table (n_sims, 6) and its read-only memory-mapped maps, (15 n_sims, s, s) each."""

    name: str
    params: np.ndarray
    maps: dict[str, np.ndarray]

    @property
    def n_sims(self) -> int:
        return len(self.params)

    @property
    def map_size(self) -> int:
        return next(iter(self.maps.values())).shape[-1]


def _read_params(path: Path) -> np.ndarray:
    import warnings

    check_readable_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy warns on an empty table; the check below says it
            params = np.loadtxt(path, ndmin=2)
    except (ValueError, UnicodeDecodeError) as err:
        raise DataFormatError(path, f"not a numeric table ({' '.join(str(err).split())[:150]})") from None
    if len(params) == 0:
        raise DataFormatError(path, "holds no rows")
    if params.shape[1] < 6:
        raise DataFormatError(path, f"needs 6 columns (Om sigma8 SN1 AGN1 SN2 AGN2), has {params.shape[1]}")
    params = params[:, :6]
    if not np.isfinite(params).all() or (params <= 0).any():
        raise DataFormatError(path, "parameters must be finite and positive")
    return params


def load_suite(folder: str | Path, suite: str, n_sims: int | None = None) -> Suite | None:
    """The suite's files in ``folder``, or None when none of them is there; a partial or broken set is an error."""
    folder = Path(folder)
    paths = {"params": params_file(folder, suite), "mtot": map_file(folder, "mtot", suite),
             "p": map_file(folder, "p", suite)}
    present = {k: p.is_file() for k, p in paths.items()}
    if not any(present.values()):
        return None
    if not present["params"] or not (present["mtot"] or present["p"]):
        lacking = ", ".join(p.name for k, p in paths.items() if not present[k] and (k == "params" or not any(
            present[f] for f in ("mtot", "p"))))
        raise DataFormatError(folder, f"has part of the {SUITES[suite]} files but lacks {lacking}")
    params = _read_params(paths["params"])
    maps = {}
    for field in ("mtot", "p"):
        if not present[field]:
            continue
        check_readable_file(paths[field])
        try:
            m = np.load(paths[field], mmap_mode="r")
        except (ValueError, OSError, EOFError) as err:
            raise DataFormatError(paths[field], f"not a .npy array ({err or type(err).__name__})") from None
        if m.ndim != 3 or m.shape[1] != m.shape[2] or m.dtype.kind != "f":
            raise DataFormatError(paths[field], f"expected (N, s, s) float maps, got {m.shape} {m.dtype}")
        bad = _first_non_finite(m[: (n_sims or len(params)) * MAPS_PER_SIM])
        if bad is not None:
            raise DataFormatError(paths[field], f"map {bad} has NaN or infinite pixels")
        if m.shape[0] != MAPS_PER_SIM * len(params):
            raise DataFormatError(paths[field], f"has {m.shape[0]} maps; {paths['params'].name} has {len(params)} "
                                                f"simulations, which need {MAPS_PER_SIM * len(params)}")
        maps[field] = m
    if len({m.shape for m in maps.values()}) > 1:
        raise DataFormatError(folder, f"the {SUITES[suite]} Mtot and P files differ in shape")
    if n_sims is not None:
        if n_sims > len(params):
            raise ConfigError(f"{n_sims} simulations requested, {paths['params'].name} has {len(params)}")
        params = params[:n_sims]
        maps = {k: m[: n_sims * MAPS_PER_SIM] for k, m in maps.items()}
    return Suite(suite, params, maps)


def _first_non_finite(maps: np.ndarray, chunk: int = 256) -> int | None:
    """Index of the first map with a NaN or infinite pixel, read ``chunk`` maps at a time (the real files are
    memory-mapped and several GB)."""
    for start in range(0, len(maps), chunk):
        finite = np.isfinite(maps[start:start + chunk]).all(axis=(1, 2))
        if not finite.all():
            return start + int(np.argmin(finite))
    return None


def load_camels(folder: str | Path, n_sims: int | None = None) -> dict[str, Suite]:
    """Every suite found in ``folder`` (at least one)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataFormatError(folder, "not a folder (pass the folder that holds the Maps_*.npy and params_*.txt)")
    suites = {s: suite for s in SUITES if (suite := load_suite(folder, s, n_sims)) is not None}
    if not suites:
        expected = ", ".join(f.name for s in SUITES for f in (params_file(folder, s), map_file(folder, "mtot", s)))
        raise DataFormatError(folder, f"holds no CMD files (expected names such as {expected})")
    return suites


def simulation(n_sims: int, map_size: int, seed: int, n_jobs: int = 1, progress: bool = False) -> Simulation:
    """Both suites' simulated CMD files (``n_sims`` simulations each, ``map_size`` px maps), cached under the camels
    task; the cached file is the folder's ``done.json``, written last."""
    key = {"n_sims": n_sims, "map_size": map_size, "seed": seed}
    return Simulation(key, "done.json", functools.partial(_write_suites, key=key, n_jobs=n_jobs, progress=progress),
                      owner="camels", version=SIMULATOR_VERSION)


def _write_suites(folder: Path, key: dict[str, int], n_jobs: int, progress: bool) -> Path:
    simulate(folder, n_sims=key["n_sims"], seed=key["seed"], map_size=key["map_size"], progress=progress,
             n_jobs=n_jobs)
    write_json_atomic(folder / "done.json", key)
    return folder / "done.json"


def simulated_folder(n_sims: int, map_size: int, seed: int, n_jobs: int = 1, progress: bool = False) -> Path:
    """The folder of :func:`simulation`'s files, simulated once: the camels task and the transfer task's camels
    target share it when they ask for the same ``n_sims``, ``map_size`` and ``seed``."""
    return simulated(simulation(n_sims, map_size, seed, n_jobs, progress)).parent


def split_sims(n_sims: int, fractions=(0.9, 0.05, 0.05), seed: int = 0) -> tuple[np.ndarray, ...]:
    """(train, val, test) simulation ids: a seeded permutation cut by ``fractions``; never split by map."""
    if n_sims < 3:
        raise ConfigError(f"need at least 3 simulations to split into train, validation and test, got {n_sims}")
    order = np.random.default_rng(seed).permutation(n_sims)
    n_val = max(1, int(round(fractions[1] * n_sims)))
    n_test = max(1, int(round(fractions[2] * n_sims)))
    return np.sort(order[n_val + n_test:]), np.sort(order[:n_val]), np.sort(order[n_val:n_val + n_test])


def targets(params: np.ndarray) -> np.ndarray:
    """(n, 6) learning targets: Omega_m, sigma_8 and log10 of the four feedback amplitudes."""
    out = np.array(params, dtype=np.float32)
    for name in LOG_PARAMS:
        j = PARAM_NAMES.index(name)
        out[:, j] = np.log10(out[:, j])
    return out


def _linear_values(suite: Suite, channel: str, index) -> np.ndarray:
    source = "mtot" if channel.startswith("mtot") else channel
    if source not in suite.maps:
        raise ConfigError(f"the {SUITES[suite.name]} files lack the {source} field the {channel!r} input needs")
    x = np.asarray(suite.maps[source][index], dtype=np.float32)
    if not np.isfinite(x).all():
        raise DataFormatError(f"{SUITES[suite.name]} {source} maps", f"map(s) {index} hold NaN or infinite values")
    if channel == "mtot_nomean":  # each map over its own mean: the monopole (which gives Omega_m away) removed
        x = x / x.mean(axis=(-2, -1), keepdims=True)
    return x


def channel_values(suite: Suite, channel: str, index, floor: float | None = None) -> np.ndarray:
    """log10 maps of one channel at map ``index`` (an int or a slice), float32. Values below ``floor`` (zeros in
    a real pressure map, say) are raised to it before the log."""
    x = _linear_values(suite, channel, index)
    return np.log10(np.maximum(x, floor if floor is not None else np.finfo(np.float32).tiny))


def channel_stats(suite: Suite, sims: np.ndarray, field: str, max_maps: int = 300,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per channel, from (up to ``max_maps``) training maps: the floor (a tenth of the 0.1 % quantile of the
    positive pixels, so zeros do not become -38 in log10), and the mean and standard deviation of the
    floored log10 values."""
    rng = np.random.default_rng(seed)
    maps = (sims[:, None] * MAPS_PER_SIM + np.arange(MAPS_PER_SIM)).ravel()
    sample = np.sort(rng.choice(maps, size=min(max_maps, len(maps)), replace=False))
    means, stds, floors = [], [], []
    for channel in FIELD_CHANNELS[field]:
        values = np.stack([_linear_values(suite, channel, int(i)) for i in sample])
        positive = values[values > 0]
        if positive.size == 0:
            raise DataFormatError(f"{SUITES[suite.name]} {channel} maps", "no positive pixel in the training maps")
        floor = 0.1 * float(np.quantile(positive, 0.001))
        logs = np.log10(np.maximum(values, floor))
        means.append(logs.mean())
        stds.append(logs.std())
        floors.append(floor)
    return (np.array(means, dtype=np.float32), np.maximum(np.array(stds, dtype=np.float32), 1e-6),
            np.array(floors, dtype=np.float32))


class MapDataset(Dataset):
    """Maps of the simulations ``sims`` of one suite as standardised channels, with their 6 targets."""

    def __init__(self, suite: Suite, sims: np.ndarray, field: str, stats: tuple[np.ndarray, np.ndarray, np.ndarray]):
        if field not in FIELD_CHANNELS:
            raise ConfigError(f"unknown field {field!r}; choose from {list(FIELD_CHANNELS)}")
        self.suite, self.sims, self.field = suite, np.asarray(sims), field
        self.mean, self.std = (np.asarray(s, dtype=np.float32)[:, None, None] for s in stats[:2])
        self.floor = [float(f) for f in stats[2]]
        self.y = targets(suite.params)

    def __len__(self) -> int:
        return len(self.sims) * MAPS_PER_SIM

    def map_index(self, i: int) -> int:
        return int(self.sims[i // MAPS_PER_SIM]) * MAPS_PER_SIM + i % MAPS_PER_SIM

    def __getitem__(self, i: int):
        m = self.map_index(i)
        x = np.stack([channel_values(self.suite, c, m, f) for c, f in zip(FIELD_CHANNELS[self.field], self.floor)])
        x = (x - self.mean) / self.std
        return torch.from_numpy(x), torch.from_numpy(self.y[self.sims[i // MAPS_PER_SIM]])

    def sim_of_item(self) -> np.ndarray:
        return np.repeat(self.sims, MAPS_PER_SIM)
