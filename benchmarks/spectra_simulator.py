"""Time to simulate an ``sdss_galaxy_spec.hdf5`` of 10,000 bagpipes spectra (the issue's limit: 10 minutes on 2
cores), and the cost per model.

    python benchmarks/spectra_simulator.py [--n 10000]     # writes benchmarks/results/spectra_simulator.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import tempfile
import time
from pathlib import Path


def main(n: int = 10_000) -> dict:
    S = importlib.import_module("astrobench.tasks.spectra.simulate")
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()  # includes importing bagpipes and building one model per process
        path = S.simulate(Path(folder) / S.FILENAME, n=n, seed=0, n_jobs=2, progress=False)
        seconds = time.perf_counter() - start
        size_mb = path.stat().st_size / 1e6
    result = {"n_spectra": n, "seconds": seconds, "seconds_per_spectrum_wall": seconds / n, "n_jobs": 2,
              "file_mb": size_mb, "limit_seconds": 600 * n / 10_000, "cpu_count": os.cpu_count(),
              "python": platform.python_version()}
    out = Path(__file__).parent / "results" / "spectra_simulator.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    main(parser.parse_args().n)
