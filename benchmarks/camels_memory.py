"""Peak anonymous memory of the camels data pipeline over a full-size CMD map file.

Writes a (15000, 256, 256) float32 ``Maps_Mtot_IllustrisTNG_LH_z=0.00.npy`` (3.9 GB, written in chunks through a
memory map; lognormal values, since only the I/O path is measured) and a 1000-row parameter table into a scratch
folder, then makes one pass over all 15000 maps with the task's own loader (``load_camels`` -> ``MapDataset`` ->
DataLoader, field ``mtot``, batch 32, the training-set statistics pass included) into a trivial model
(global mean -> linear). Memory is read from /proc/self/status after every batch: ``RssAnon`` is the process's
own anonymous memory, which is what the target is about; ``RssFile`` (the page cache that the memory map
shares) is reported beside it.

    python benchmarks/camels_memory.py [--scratch DIR] [--keep]   # writes benchmarks/results/camels_memory.json
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from astrobench.tasks.camels.data import MapDataset, channel_stats, load_camels, split_sims

N_SIMS, MAP_SIZE = 1000, 256


def status_kib() -> dict[str, int]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def write_files(folder: Path, seed: int = 0) -> float:
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    maps = np.lib.format.open_memmap(folder / "Maps_Mtot_IllustrisTNG_LH_z=0.00.npy", mode="w+", dtype=np.float32,
                                     shape=(N_SIMS * 15, MAP_SIZE, MAP_SIZE))
    for i in range(0, len(maps), 500):
        maps[i:i + 500] = np.exp(rng.standard_normal((min(500, len(maps) - i), MAP_SIZE, MAP_SIZE),
                                                     dtype=np.float32)) * 4e11
    maps.flush()
    del maps
    params = np.column_stack([rng.uniform(0.1, 0.5, N_SIMS), rng.uniform(0.6, 1.0, N_SIMS),
                              np.exp(rng.uniform(np.log(0.25), np.log(4), (N_SIMS, 2))),
                              np.exp(rng.uniform(np.log(0.5), np.log(2), (N_SIMS, 2)))])
    np.savetxt(folder / "params_LH_IllustrisTNG.txt", params, header="Om sigma8 SN1 AGN1 SN2 AGN2")
    return time.perf_counter() - start


def one_pass(folder: Path) -> dict[str, float]:
    before = status_kib()
    suite = load_camels(folder)["tng"]
    sims = np.arange(suite.n_sims)
    train, _, _ = split_sims(suite.n_sims, seed=0)
    stats = channel_stats(suite, train, "mtot")
    loader = DataLoader(MapDataset(suite, sims, "mtot", stats), batch_size=32, shuffle=True)
    model = torch.nn.Linear(1, 6)
    peak_anon, peak_file, n_maps = 0, 0, 0
    start = time.perf_counter()
    with torch.no_grad():
        for x, _ in loader:
            model(x.mean(dim=(1, 2, 3))[:, None])
            n_maps += len(x)
            now = status_kib()
            peak_anon, peak_file = max(peak_anon, now["RssAnon"]), max(peak_file, now["RssFile"])
    seconds = time.perf_counter() - start
    return {"n_maps": n_maps, "seconds": seconds, "maps_per_s": n_maps / seconds,
            "rss_anon_before_mib": before["RssAnon"] / 1024, "peak_rss_anon_mib": peak_anon / 1024,
            "peak_rss_file_mib": peak_file / 1024, "target_peak_rss_anon_mib": 2048}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scratch", type=Path, default=None, help="folder for the 3.9 GB file (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the written files")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="camels_memory_", dir=args.scratch))
    try:
        write_seconds = write_files(folder)
        result = {"file_gib": (folder / "Maps_Mtot_IllustrisTNG_LH_z=0.00.npy").stat().st_size / 2**30,
                  "write_seconds": write_seconds, **one_pass(folder), "machine": platform.platform(),
                  "cpus": torch.get_num_threads()}
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    out = Path(__file__).parent / "results" / "camels_memory.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
