"""Rerun the full runs that RESULTS.md reports, one after another, each alone, and record what they took.

    python benchmarks/full_runs.py --out runs/full                  # every task (several hours on 2 cores)
    python benchmarks/full_runs.py --out runs/full --tasks rings,sn_lasso
    python benchmarks/full_runs.py --list                           # the commands, without running them

Each run is the command RESULTS.md names for the task (``RUNS`` below; seed 0), started with an empty cache of
its own when ``--fresh-cache`` is given (the timing a new user sees), else with the shared ``$ASTROBENCH_CACHE``.
The real files come from ``$ASTROBENCH_SHARED_DATA`` (default ``../shared/data``). It writes
``OUT/full_runs.json``: per task the command, the commit, the wall seconds, the exit status and the run folder, so
that RESULTS.md's numbers can be compared with the ``metrics.json`` of a fresh run.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# task -> the arguments after `astrobench run`, as RESULTS.md gives them ({shared} is the real-data folder)
RUNS: dict[str, list[str]] = {
    "rings": ["rings"],
    "cluster_mass": ["cluster_mass"],
    "sn_lasso": ["sn_lasso", "--data", "{shared}/pantheonplus/Pantheon+SH0ES.dat"],
    "camels": ["camels"],
    "photoz": ["photoz"],
    "spectra": ["spectra"],
    "allsky": ["allsky", "--set", "eval_data={shared}/allsky_cloudynight", "--set",
               "adapt_data={shared}/allsky_cloudynight", "--set", "eval_camera=lowell"],
    "gan_latent": ["gan_latent"],
    "transfer": ["transfer"],
    "transfer_camels": ["transfer", "--set", 'targets=["camels"]'],
}


def commit() -> str:
    """The checkout's commit (short hash), with ``+dirty`` when it has uncommitted changes."""
    root = Path(__file__).resolve().parents[1]
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True,
                           text=True)
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def command(task: str, out: Path, shared: str) -> list[str]:
    """The full-run command of ``task`` into ``out`` (run folder ``out/<task>/full``), seed 0."""
    args = [a.format(shared=shared) for a in RUNS[task]]
    return ["astrobench", "run", *args, "--seed", "0", "--out", str(out / task), "--name", "full", "--no-progress"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/full"))
    parser.add_argument("--tasks", default=",".join(RUNS), help="comma-separated, from: " + ", ".join(RUNS))
    parser.add_argument("--fresh-cache", action="store_true", help="an empty cache per run (time from scratch)")
    parser.add_argument("--list", action="store_true", help="print the commands and stop")
    args = parser.parse_args()
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in RUNS]
    if unknown:
        parser.error(f"unknown tasks {unknown}; known: {', '.join(RUNS)}")
    shared = os.environ.get("ASTROBENCH_SHARED_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    if args.list:
        for task in tasks:
            print(shlex.join(command(task, args.out, shared)))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    record_path = args.out / "full_runs.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    for task in tasks:
        cmd = command(task, args.out, shared)
        env = dict(os.environ)
        if args.fresh_cache:
            env["ASTROBENCH_CACHE"] = tempfile.mkdtemp(prefix=f"astrobench-cache-{task}-")
        print(f"[{time.strftime('%H:%M:%S')}] {shlex.join(cmd)}", flush=True)
        start = time.perf_counter()
        status = subprocess.run(cmd, env=env).returncode
        record[task] = {"command": shlex.join(cmd), "commit": commit(), "wall_s": round(time.perf_counter() - start, 1),
                        "exit_status": status, "run_dir": str(args.out / task / RUNS[task][0] / "full"),
                        "fresh_cache": args.fresh_cache}
        record_path.write_text(json.dumps(record, indent=2))
        print(f"    exit {status} after {record[task]['wall_s']:.0f} s", flush=True)
    return 0 if all(record[t]["exit_status"] == 0 for t in tasks) else 1


if __name__ == "__main__":
    sys.exit(main())
