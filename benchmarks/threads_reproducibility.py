"""Does the number of CPU threads change a run's numbers? One small rings run (smoke size, with 3,000 single-ring
training images and 2 regression epochs so that the networks move), seed 0, once with 1 and once with 2 threads
(``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``), each in its own process with its own cache; prints the leaves of
``results`` that differ.

    python benchmarks/threads_reproducibility.py --out /tmp/threads
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quick_all import differences  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/threads"))
    args = parser.parse_args()
    results = {}
    for threads in (1, 2):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                   ASTROBENCH_CACHE=str(args.out / f"cache{threads}"))
        subprocess.run([sys.executable, "-m", "astrobench.cli", "run", "rings", "--set", "size='smoke'", "--set",
                        "n_single=[3000,500,1000]", "--set", "regress_max_epochs=2", "--seed", "0", "--out",
                        str(args.out), "--name", f"threads{threads}", "--no-progress"], env=env, check=True)
        metrics = args.out / "rings" / f"threads{threads}" / "metrics.json"
        results[threads] = json.loads(metrics.read_text())["results"]
    found = differences(results[1], results[2])
    print(f"{len(found)} leaves of results differ between 1 and 2 threads")
    for line in found[:10]:
        print("  " + line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
