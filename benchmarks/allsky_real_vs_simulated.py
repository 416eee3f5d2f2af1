"""allsky: do simulated frames look like the Lowell camera's? A side-by-side figure and the loader's features per class.

    python benchmarks/allsky_real_vs_simulated.py [--real ../shared/data/allsky_cloudynight] [--n 300]
        [--real-camera lowell]

Writes docs/tasks/figures/allsky_real_vs_simulated.png (raw frames with the same asinh stretch, then the network
inputs) and benchmarks/results/allsky_real_vs_simulated.json (per class: stars per 100 deg^2, log10 sky rate,
relative sky structure, stretched median, exposure time) for real and simulated frames.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from astrobench.core import plots
from astrobench.tasks.allsky.data import FEATURE_NAMES, load_frames, read_frame
from astrobench.tasks.allsky.simulate import simulate

ROOT = Path(__file__).resolve().parent.parent


def class_summary(frames) -> dict:
    per_region = frames.features[:, : 33 * len(FEATURE_NAMES)].reshape(len(frames), 33, len(FEATURE_NAMES))
    out = {}
    for c, name in enumerate(frames.class_names):
        sel = frames.labels == c
        if sel.any():
            out[name] = {"n": int(sel.sum()), **{f: round(float(per_region[sel, :, j].mean()), 3)
                                                 for j, f in enumerate(FEATURE_NAMES)},
                         "median_exptime_s": float(np.median(frames.exptime_s[sel]))}
    return out


def stretched(counts: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(counts, [1, 99.5])
    return np.arcsinh(10 * np.clip((counts - lo) / (hi - lo), 0, None)) / np.arcsinh(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", default=str(ROOT.parent / "shared" / "data" / "allsky_cloudynight"))
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--real-camera", default="lowell", help="the real frames' camera geometry (auto, lowell, ...)")
    args = parser.parse_args()
    real = load_frames(args.real, camera=args.real_camera)
    with tempfile.TemporaryDirectory() as tmp:
        # randomised cameras, 30 frames each (simulator version 3)
        manifest = simulate(tmp, n=args.n, seed=0, n_jobs=1, frames_per_camera=30, progress=False)
        simulated = load_frames(manifest)
        # one simulated frame of each real frame's class, in the real frames' order
        picks, used = [], set()
        for label in real.labels:
            i = next(i for i in np.flatnonzero(simulated.labels == label) if i not in used)
            used.add(i)
            picks.append(i)
        raw_sim = [read_frame(simulated.files[i])[0] for i in picks]
        raw_real = [read_frame(f)[0] for f in real.files]
    n = len(real)
    fig, axes = plots.plt.subplots(4, n, figsize=(1.9 * n, 8.2), squeeze=False)
    rows = [("real frame", raw_real), ("simulated frame", raw_sim),
            ("real: network input", [real.images[i, 0] for i in range(n)]),
            ("simulated: network input", [simulated.images[i, 0] for i in picks])]
    for r, (title, images) in enumerate(rows):
        for c, image in enumerate(images):
            ax = axes[r, c]
            ax.imshow(stretched(image) if r < 2 else image, cmap="gray", origin="lower", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r % 2 == 0:
                ax.set_title(f"{real.class_names[real.labels[c]]} ({int(real.flags[c].sum())}/33)", fontsize=7)
        axes[r, 0].set_ylabel(title, fontsize=8)
    fig.tight_layout()
    figure = ROOT / "docs" / "tasks" / "figures" / "allsky_real_vs_simulated.png"
    figure.parent.mkdir(parents=True, exist_ok=True)
    plots.save_figure(fig, figure, dpi=90)
    result = {"real": class_summary(real), "simulated": class_summary(simulated), "n_simulated": args.n}
    out = ROOT / "benchmarks" / "results" / "allsky_real_vs_simulated.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    print(f"figure: {figure}")


if __name__ == "__main__":
    main()
