"""allsky: how well does the `auto` camera geometry recover randomly drawn simulated cameras?

    python benchmarks/allsky_camera_estimate.py [--cameras 20] [--frames 12] [--seed 11]

Simulates ``--frames`` frames of each of ``--cameras`` cameras drawn by the simulator's domain randomisation (lens
glow, vignetting, trees, detector, file format), estimates every camera's circle from the median of its frames as
the loader does for a user's camera, and writes benchmarks/results/allsky_camera_estimate.json: per camera the
largest of |cx - true|, |cy - true|, |R - true| as a fraction of the true R, and the camera's glow and vignetting.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from astrobench.tasks.allsky.data import load_frames
from astrobench.tasks.allsky.simulate import SIMULATOR_VERSION, simulate

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=20)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        simulate(tmp, n=args.cameras * args.frames, seed=args.seed, frames_per_camera=args.frames, progress=True)
        frames = load_frames(Path(tmp) / "manifest.csv", 64, n_jobs=2)
        truth = json.loads((Path(tmp) / "cameras.json").read_text())
    rows = []
    for cam_id, true in truth.items():
        est = frames.cameras[cam_id]
        error = max(abs(est["cx"] - true["cx"]), abs(est["cy"] - true["cy"]), abs(est["radius"] - true["radius"]))
        rows.append({"camera": cam_id, "error_fraction_of_r": round(error / true["radius"], 4),
                     "radius_px": round(true["radius"], 1), "rim_glow": round(true["rim_glow"], 3),
                     "rim_glow_radius": round(true["rim_glow_radius"], 3),
                     "vignetting": round(true["vignetting"], 3),
                     "vignetting_power": round(true["vignetting_power"], 2)})
    errors = np.array([r["error_fraction_of_r"] for r in rows])
    result = {"simulator_version": SIMULATOR_VERSION, "seed": args.seed, "frames_per_camera": args.frames,
              "n_cameras": len(rows), "within_1pct": int(np.sum(errors <= 0.01)),
              "median_error_fraction": round(float(np.median(errors)), 4), "cameras": rows}
    out = ROOT / "benchmarks" / "results" / "allsky_camera_estimate.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{result['within_1pct']} of {len(rows)} cameras within 1 % of R; worst "
          f"{errors.max():.4f}; median {result['median_error_fraction']:.4f} -> {out}")


if __name__ == "__main__":
    main()
