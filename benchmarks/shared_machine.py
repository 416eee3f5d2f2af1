"""How much slower `astrobench demo` gets when another CPU-bound process shares the machine.

Runs the demo twice, each from an empty cache: alone, then beside one process that keeps one core busy (a pure
Python loop, like a student's other notebook). Writes ``shared_machine.json`` (per-task seconds, totals, ratio)
and prints a table. Run it alone on the machine, it takes about three demo lengths::

    python benchmarks/shared_machine.py --out /tmp/shared [--tasks rings,camels] [--wait-policy ACTIVE]

``--wait-policy`` sets OMP_WAIT_POLICY for both demos (astrobench's default is PASSIVE): ACTIVE measures the
spinning OpenMP threads that made a busy machine cost 5-10x.
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


def demo(out: Path, tasks: str | None, env: dict[str, str]) -> dict:
    """One `astrobench demo` from an empty cache; its wall time and each task's seconds."""
    with tempfile.TemporaryDirectory(prefix="astrobench-cache-") as cache:
        cmd = ["astrobench", "demo", "--out", str(out), "--no-progress", *(["--tasks", tasks] if tasks else [])]
        start = time.perf_counter()
        subprocess.run(cmd, env={**env, "ASTROBENCH_CACHE": cache}, check=True)
        wall = time.perf_counter() - start
    per_task = {p.parent.parent.name: json.loads(p.read_text())["seconds"]["total"]
                for p in out.glob("*/demo-*/metrics.json")}
    return {"wall_s": wall, "tasks_s": per_task}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tasks", default=None, help="comma-separated tasks (default: all)")
    parser.add_argument("--wait-policy", default=None, help="OMP_WAIT_POLICY for both demos (default: astrobench's)")
    args = parser.parse_args()
    env = dict(os.environ)
    if args.wait_policy:
        env["OMP_WAIT_POLICY"] = args.wait_policy
    alone = demo(args.out / "alone", args.tasks, env)
    busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
    try:
        time.sleep(1)
        shared = demo(args.out / "shared", args.tasks, env)
    finally:
        busy.kill()
    result = {"cores": os.cpu_count(), "wait_policy": env.get("OMP_WAIT_POLICY", "PASSIVE (astrobench default)"),
              "alone": alone, "shared": shared, "ratio": shared["wall_s"] / alone["wall_s"]}
    (args.out / "shared_machine.json").write_text(json.dumps(result, indent=2))
    print(f"{'task':14s} {'alone s':>8s} {'shared s':>9s} {'ratio':>6s}")
    for task, seconds in alone["tasks_s"].items():
        other = shared["tasks_s"].get(task, float("nan"))
        print(f"{task:14s} {seconds:8.0f} {other:9.0f} {other / seconds:6.2f}")
    print(f"{'demo (wall)':14s} {alone['wall_s']:8.0f} {shared['wall_s']:9.0f} {result['ratio']:6.2f}")


if __name__ == "__main__":
    main()
