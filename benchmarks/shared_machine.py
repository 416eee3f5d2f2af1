"""How much slower `astrobench demo` gets when another CPU-bound process shares the machine.

Runs the demo twice, each from an empty cache: alone, then beside one process that keeps one core busy (a pure
Python loop, like a student's other notebook). Writes ``shared_machine.json`` (per-task seconds, totals, ratio)
and prints a table. Run it alone on the machine, it takes about three demo lengths::

    python benchmarks/shared_machine.py --out /tmp/shared [--tasks rings,camels] [--threads 2]

By default each run picks its thread count itself (one per core that other processes leave free when it starts);
``--threads N`` fixes it for both demos (``--threads 2`` on 2 cores: the behaviour before that default).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUSY_LOOP = "while True: pass"


def demo(out: Path, tasks: str | None, threads: int | None, env: dict[str, str]) -> dict:
    """One `astrobench demo` from an empty cache; its wall time, each task's seconds and thread count."""
    with tempfile.TemporaryDirectory(prefix="astrobench-cache-") as cache:
        cmd = ["astrobench", "demo", "--out", str(out), "--no-progress", *(["--tasks", tasks] if tasks else []),
               *(["--threads", str(threads)] if threads else [])]
        start = time.perf_counter()
        subprocess.run(cmd, env={**env, "ASTROBENCH_CACHE": cache}, check=True)
        wall = time.perf_counter() - start
    per_task = {p.parent.parent.name: json.loads(p.read_text())["seconds"]["total"]
                for p in out.glob("*/demo-*/metrics.json")}
    threads_used = {p.parent.parent.name: json.loads(p.read_text()).get("threads")
                    for p in out.glob("*/demo-*/config.json")}
    return {"wall_s": wall, "tasks_s": per_task, "threads": threads_used}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tasks", default=None, help="comma-separated tasks (default: all)")
    parser.add_argument("--threads", type=int, default=None, help="fixed thread count (default: each run's own)")
    args = parser.parse_args()
    env = dict(os.environ)
    alone = demo(args.out / "alone", args.tasks, args.threads, env)
    busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
    try:
        time.sleep(1)
        shared = demo(args.out / "shared", args.tasks, args.threads, env)
    finally:
        busy.kill()
    result = {"cores": os.cpu_count(), "threads_option": args.threads,
              "alone": alone, "shared": shared, "ratio": shared["wall_s"] / alone["wall_s"]}
    (args.out / "shared_machine.json").write_text(json.dumps(result, indent=2))
    print(f"{'task':14s} {'alone s':>8s} {'shared s':>9s} {'ratio':>6s} {'threads':>8s}")
    for task, seconds in alone["tasks_s"].items():
        other = shared["tasks_s"].get(task, float("nan"))
        used = f"{alone['threads'].get(task)}/{shared['threads'].get(task)}"
        print(f"{task:14s} {seconds:8.0f} {other:9.0f} {other / seconds:6.2f} {used:>8s}")
    print(f"{'demo (wall)':14s} {alone['wall_s']:8.0f} {shared['wall_s']:9.0f} {result['ratio']:6.2f}")


if __name__ == "__main__":
    main()
