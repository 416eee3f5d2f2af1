"""Speed of the vectorised ring renderer against the tutorial's PIL procedure, side by side in one run.

Both make single-ring images in memory (no PNG writes) from the same parameter distribution: the reference
draws 360 ``ImageDraw.ellipse`` per ring in Python, astrobench renders whole batches with numpy.

    python benchmarks/rings_simulator.py            # writes benchmarks/results/rings_simulator.json
"""

from __future__ import annotations

import json
import os
import platform
import random
import time
from pathlib import Path

import numpy as np

from astrobench.tasks.rings.simulate import draw_parameters, render_ring_reference_pil, simulate_ring_images


def pil_reference_rate(n: int, seed: int = 0) -> float:
    """Rings per second of the tutorial's generator (parameter draws + 360 PIL ellipses per ring)."""
    rng = random.Random(seed)
    params = draw_parameters(n, "single", rng=seed)
    start = time.perf_counter()
    for i in range(n):
        d = params.deformation[i, 0]
        radii = [params.radius[i, 0] + rng.uniform(-d, d) for _ in range(360)]
        render_ring_reference_pil(28, params.centers[i, 0], radii, params.thickness[i, 0])
    return n / (time.perf_counter() - start)


def vectorised_rate(n: int, repeats: int = 3, seed: int = 0) -> float:
    """Rings per second of astrobench's renderer (best of ``repeats``), single-ring mode, 28 x 28."""
    best = float("inf")
    for r in range(repeats):
        start = time.perf_counter()
        simulate_ring_images(n, "single", image_size=28, seed=seed + r)
        best = min(best, time.perf_counter() - start)
    return n / best


def main() -> dict:
    pil = pil_reference_rate(1000)
    ours = vectorised_rate(50000)
    result = {
        "pil_reference_rings_per_s": round(pil, 1),
        "astrobench_rings_per_s": round(ours, 1),
        "speedup": round(ours / pil, 1),
        "targets": {"speedup": ">= 50", "astrobench_rings_per_s": ">= 20000"},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__},
    }
    out = Path(__file__).parent / "results" / "rings_simulator.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
