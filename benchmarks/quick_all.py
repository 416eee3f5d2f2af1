"""Every task at --quick with seed 0, and the ``results`` trees of two such sweeps compared: the check that a
refactoring changed no number.

    python benchmarks/quick_all.py --out /tmp/after                     # run all nine -> /tmp/after/results.json
    PYTHONPATH=/tmp/old-checkout/src python benchmarks/quick_all.py --out /tmp/before
    python benchmarks/quick_all.py --compare /tmp/before/results.json /tmp/after/results.json

Each task runs in its own process with an empty cache of its own unless ``--cache`` names one (a shared cache
would hide a change in a simulator). ``--compare`` prints every leaf that differs (numbers beyond ``--rtol``) and
exits 1 when any does.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TASKS = ["rings", "cluster_mass", "sn_lasso", "camels", "photoz", "spectra", "allsky", "gan_latent", "transfer"]


def sweep(out: Path, tasks: list[str], cache: str | None) -> dict:
    """Run ``tasks`` at --quick, seed 0, into ``out``; return {task: results} and write out/results.json."""
    out.mkdir(parents=True, exist_ok=True)
    code = "import astrobench, sys; print(astrobench.__file__)"
    where = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip()
    print(f"astrobench from {where}", flush=True)
    found, seconds = {}, {}
    for task in tasks:
        env = dict(os.environ, ASTROBENCH_CACHE=cache or tempfile.mkdtemp(prefix=f"quick-{task}-"))
        cmd = [sys.executable, "-m", "astrobench.cli", "run", task, "--quick", "--seed", "0", "--out", str(out),
               "--name", "quick", "--no-progress"]
        start = time.perf_counter()
        status = subprocess.run(cmd, env=env).returncode
        seconds[task] = round(time.perf_counter() - start, 1)
        metrics = out / task / "quick" / "metrics.json"
        found[task] = json.loads(metrics.read_text())["results"] if status == 0 and metrics.exists() else None
        print(f"{task:13s} exit {status}  {seconds[task]:.0f} s", flush=True)
    (out / "results.json").write_text(json.dumps({"source": where, "seconds": seconds, "results": found}, indent=1))
    return found


def differences(a, b, path: str = "", rtol: float = 0.0) -> list[str]:
    """Every leaf where the trees ``a`` and ``b`` differ (numbers: beyond relative tolerance ``rtol``)."""
    if isinstance(a, dict) and isinstance(b, dict):
        def at(k):
            return f"{path}.{k}" if path else str(k)

        out = [f"{at(k)}: only in the first" for k in a.keys() - b.keys()]
        out += [f"{at(k)}: only in the second" for k in b.keys() - a.keys()]
        for k in sorted(a.keys() & b.keys()):
            out += differences(a[k], b[k], at(k), rtol)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]", rtol)]
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        same = (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=rtol, abs_tol=0.0)
        return [] if same else [f"{path}: {a!r} -> {b!r}"]
    return [] if a == b else [f"{path}: {a!r} -> {b!r}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--cache", help="one cache for every task (default: an empty one per task)")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    parser.add_argument("--rtol", type=float, default=0.0)
    args = parser.parse_args()
    if args.compare:
        before, after = (json.loads(p.read_text())["results"] for p in args.compare)
        diff = differences(before, after, rtol=args.rtol)
        print("\n".join(diff) if diff else "identical results")
        return 1 if diff else 0
    if args.out is None:
        parser.error("--out or --compare")
    sweep(args.out, [t.strip() for t in args.tasks.split(",") if t.strip()], args.cache)
    return 0


if __name__ == "__main__":
    sys.exit(main())
