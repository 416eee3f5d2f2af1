"""Scale-out on this machine: Lightning DDP on 1 vs 2 CPU processes, and a simulation on 1 vs 2 Dask workers.

    python benchmarks/scaling.py [--repeats 3] [--n-spectra 2000] [--skip-ddp] [--skip-dask]

- **DDP:** wall time of ``astrobench run rings --quick`` (a fresh process each time, the simulation cache filled
  beforehand so that only training and evaluation are timed) with ``--devices 1`` and with ``--devices 2
  --strategy ddp``, both ``--accelerator cpu``.
- **Dask:** wall time of simulating N spectra, ``astrobench.tasks.spectra.simulate(out, n=N, n_jobs=1|2)`` in a fresh
  Python process each time (bagpipes models, noise, the HDF5 file): ``n_jobs=1`` runs in that process (no Dask),
  ``n_jobs=2`` starts a local Dask cluster of 2 workers inside it. The command line adds its own start (it loads
  the task, and with it PyTorch and Lightning, ~8 s here) to both; that start is timed on its own, and the
  speed-up of ``astrobench simulate spectra --n N --set n_jobs=1|2`` follows from the two.

Writes benchmarks/results/scaling.json: every repeat's seconds, the mean and the speed-up with its standard error
(from the spread of the repeats, propagated to the ratio).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _mean_err(values: list[float]) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0


def _speedup(slow: list[float], fast: list[float]) -> dict:
    (a, da), (b, db) = _mean_err(slow), _mean_err(fast)
    ratio = a / b
    return {"speedup": round(ratio, 3), "speedup_err": round(ratio * float(np.hypot(da / a, db / b)), 3)}


def time_ddp(repeats: int, cache: Path) -> dict:
    env = {**os.environ, "ASTROBENCH_CACHE": str(cache)}
    common = ["run", "rings", "--quick", "--accelerator", "cpu", "--no-progress"]
    out = Path(tempfile.mkdtemp(prefix="scaling-runs-"))
    subprocess.run([sys.executable, "-m", "astrobench.cli", *common, "--out", str(out), "--name", "warm",
                    "--devices", "1"], check=True, env=env, capture_output=True)  # fills the simulation cache
    seconds: dict[str, list[float]] = {"1 process": [], "2 processes (ddp)": []}
    for r in range(repeats):
        for label, extra in (("1 process", ["--devices", "1"]),
                             ("2 processes (ddp)", ["--devices", "2", "--strategy", "ddp"])):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "astrobench.cli", *common, *extra, "--out", str(out),
                            "--name", f"{label.split()[0]}-{r}"], check=True, env=env, capture_output=True)
            seconds[label].append(round(time.perf_counter() - start, 2))
            print(f"rings --quick, {label}: {seconds[label][-1]:.1f} s", flush=True)
    return {"command": "astrobench run rings --quick --accelerator cpu [--devices 2 --strategy ddp]",
            "seconds": seconds, **_speedup(*seconds.values())}


def _seconds(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return round(time.perf_counter() - start, 2)


def time_dask(repeats: int, n: int) -> dict:
    seconds: dict[str, list[float]] = {"1 worker": [], "2 Dask workers": []}
    out = Path(tempfile.mkdtemp(prefix="scaling-spectra-"))
    code = ("import sys; from astrobench.tasks.spectra.simulate import simulate; "
            "simulate(sys.argv[1], n=int(sys.argv[2]), seed=int(sys.argv[3]), n_jobs=int(sys.argv[4]), progress=False)")
    for r in range(repeats):
        for label, n_jobs in (("1 worker", 1), ("2 Dask workers", 2)):
            seconds[label].append(_seconds([sys.executable, "-c", code, str(out / f"{n_jobs}-{r}"), str(n),
                                            str(100 + r), str(n_jobs)]))
            print(f"{n} spectra, {label}: {seconds[label][-1]:.1f} s", flush=True)
    # what `astrobench simulate spectra` does before it simulates: start Python, load the CLI and the task
    cli_start = [_seconds([sys.executable, "-c", "from astrobench import cli; from astrobench.registry import "
                           "get_task; get_task('spectra')"]) for _ in range(repeats)]
    print(f"command-line start: {np.mean(cli_start):.1f} s", flush=True)
    with_cli = {label: [t + c for t, c in zip(v, cli_start)] for label, v in seconds.items()}
    return {"command": f"spectra.simulate(out, n={n}, n_jobs=1|2) in a fresh Python process each time (with 2, a "
                       "local Dask cluster is started inside it)",
            "seconds": seconds, **_speedup(*seconds.values()),
            "cli_start_seconds": cli_start,
            "cli": {"command": f"astrobench simulate spectra --n {n} --set n_jobs=1|2 (simulation + command-line "
                               "start, both measured above)", **_speedup(*with_cli.values())}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-spectra", type=int, default=2000)
    parser.add_argument("--skip-ddp", action="store_true")
    parser.add_argument("--skip-dask", action="store_true")
    args = parser.parse_args()
    result = {"machine": f"{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}, no GPU",
              "repeats": args.repeats}
    if not args.skip_dask:
        result["dask_simulation"] = time_dask(args.repeats, args.n_spectra)
    if not args.skip_ddp:
        with tempfile.TemporaryDirectory(prefix="scaling-cache-") as cache:
            result["ddp_training"] = time_ddp(args.repeats, Path(cache))
    out = ROOT / "benchmarks" / "results" / "scaling.json"
    if out.exists():  # a part skipped this time keeps its earlier numbers
        result = {**json.loads(out.read_text()), **result}
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk.startswith("speedup")} for k, v in result.items()
                      if isinstance(v, dict)}), "->", out)


if __name__ == "__main__":
    main()
