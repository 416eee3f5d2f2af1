"""Time to simulate a 3D-HST-format catalogue of 20,000 galaxies from nothing (empty cache), by stage.

The issue's limit is 3 minutes on 2 cores. The stages: the bagpipes rest-frame templates (one model_galaxy, then
``update`` per template), the filter-and-IGM weights on the redshift grid with the one matrix product that gives
every template's fluxes at every redshift, then the population, noise and the ASCII file.

    python benchmarks/photoz_simulator.py        # writes benchmarks/results/photoz_simulator.json
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import tempfile
import time
from pathlib import Path

N_GALAXIES = 20_000
N_TEMPLATES = 3000


def main() -> dict:
    with tempfile.TemporaryDirectory() as cache:
        os.environ["ASTROBENCH_CACHE"] = cache  # a cold start: no cached templates
        S = importlib.import_module("astrobench.tasks.photoz.simulate")
        import numpy as np

        seconds = {}
        start = time.perf_counter()  # includes importing bagpipes (its grids load on import)
        params = S.draw_template_parameters(N_TEMPLATES, np.random.default_rng(0))
        templates = S.rest_frame_templates(params)
        seconds["bagpipes_templates"] = time.perf_counter() - start
        t = time.perf_counter()
        S.band_weights(templates["wavelength_aa"])
        seconds["filter_igm_weights"] = time.perf_counter() - t
        t = time.perf_counter()
        path = S.simulate(Path(cache) / "cat", n=N_GALAXIES, seed=0, n_templates=N_TEMPLATES)
        # templates (cold cache; bagpipes imported) + catalogue
        seconds["simulate_total_cold"] = time.perf_counter() - t
        t = time.perf_counter()
        S.simulate(Path(cache) / "cat2", n=N_GALAXIES, seed=0, n_templates=N_TEMPLATES)
        seconds["simulate_total_cached_templates"] = time.perf_counter() - t
        size_mb = path.stat().st_size / 1e6
    result = {"n_galaxies": N_GALAXIES, "n_templates": N_TEMPLATES, "seconds": seconds, "file_mb": size_mb,
              "limit_seconds": 180, "cpu_count": os.cpu_count(), "python": platform.python_version()}
    out = Path(__file__).parent / "results" / "photoz_simulator.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
