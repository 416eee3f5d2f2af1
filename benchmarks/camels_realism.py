"""How real are the camels simulator's boxes? (numbers in RESULTS.md, "camels", realism)

1. Gravity only: the realised 3-D matter P(k) of 8 boxes (Omega_m 0.3, sigma_8 0.8) against halofit (Takahashi et
   al. 2012, CAMB), 0.3 < k < 3 h/Mpc, at the simulator's settings (25 Mpc/h, 64^3 particles, 10 FastPM steps).
2. The same PM code at the same particle spacing (0.78 Mpc/h) in 25, 50 and 100 Mpc/h boxes, and at 0.39 Mpc/h in
   25 Mpc/h: separates what the box size does from what the code's resolution does.
3. Projected Mtot pixels: median / mean and the spread of log10 Mtot, over the 15 maps of 8 boxes.
4. Feedback: P_baryonified / P_gravity-only at k = 1, 5, 10 h/Mpc over 24 Latin-hypercube points per suite,
   against the CAMELS ranges estimated from the syren-baryon fits (Kammerer et al. 2025, arXiv:2506.08783) to the
   CAMELS LH sets (docs/tasks/camels.md); figure ``camels_realism.png``.

Usage: python benchmarks/camels_realism.py [--out folder]   (about 6 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
from pathlib import Path

import numpy as np

S = importlib.import_module("astrobench.tasks.camels.simulate")
from astrobench.tasks.camels import baryons, nbody  # noqa: E402
from astrobench.tasks.camels.cosmology import power_spectrum  # noqa: E402

BINS = np.geomspace(0.3, 3.0, 9)
# 2.5-97.5 % of the syren-baryon fits over the CAMELS LH priors (our evaluation; docs/tasks/camels.md)
CAMELS_RANGES = {"tng": {1: (0.84, 1.02), 5: (0.50, 0.99), 10: (0.40, 0.94)},
                 "simba": {1: (0.69, 0.98), 5: (0.38, 0.94), 10: (0.36, 0.93)}}
FIDUCIAL = np.array([0.3, 0.8, 1.0, 1.0, 1.0, 1.0])


def box_power(n: int, box: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, 99])
    delta_k = nbody.gaussian_field(lambda k: power_spectrum(0.3, 0.8, k, linear=True), n, box, rng)
    pos = nbody.evolve(0.3, delta_k, n, box, n_mesh=n, n_steps=S.PM_STEPS, a_start=S.A_START)
    k, p, _ = nbody.particle_power_spectrum(pos, box, 2 * n, BINS)
    return k, p / power_spectrum(0.3, 0.8, k)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("."))
    args = parser.parse_args()
    out: dict = {}
    t0 = time.time()

    boxes = [box_power(64, 25.0, s) for s in range(8)]
    k, ratios = boxes[0][0], np.array([ratio for _, ratio in boxes])
    out["gravity_only_25mpc_64cubed"] = {"k": k.round(3).tolist(), "p_over_halofit": ratios.mean(0).round(3).tolist(),
                                         "scatter_of_mean": (ratios.std(0) / np.sqrt(8)).round(3).tolist()}
    print("P / halofit, 8 boxes of 25 Mpc/h, 64^3:", dict(zip(k.round(2), ratios.mean(0).round(2))))

    ladder = {}
    for n, box, seeds in ((32, 25.0, 8), (64, 50.0, 4), (128, 100.0, 2)):
        r = np.array([box_power(n, box, s)[1] for s in range(seeds)])
        ladder[f"{box:.0f} Mpc/h, {n}^3"] = r.mean(0).round(3).tolist()
        print(f"P / halofit, {box:.0f} Mpc/h, {n}^3 ({seeds} boxes):", r.mean(0).round(2))
    out["box_size_ladder_same_spacing"] = ladder

    rng = np.random.default_rng(7)
    medians, spreads, means = [], [], []
    for i in range(8):
        mtot, _ = S._one_simulation((FIDUCIAL, "tng", 64, 7, i))
        medians.append(np.median(mtot, axis=(1, 2)) / mtot.mean(axis=(1, 2)))
        spreads.append(np.log10(mtot).std(axis=(1, 2)))
        means.append(mtot.mean(axis=(1, 2)) / (0.3 * S.RHO_CRIT * 5.0))
    out["mtot_pixels"] = {"median_over_mean": float(np.mean(medians)), "std_log10": float(np.mean(spreads)),
                          "slab_mean_scatter": float(np.std(means))}
    print(f"Mtot pixels: median / mean {np.mean(medians):.3f}, std of log10 {np.mean(spreads):.3f}, "
          f"a slab's mean / Omega_m rho_crit 5 Mpc/h scatters by {np.std(means):.2f}")

    suppression = {}
    for suite in ("tng", "simba"):
        params = S.latin_hypercube(24, rng)
        rows = []
        edges = np.array([0.9, 1.1, 4.5, 5.5, 9.0, 11.0])  # shells around k = 1, 5, 10 h/Mpc
        for i, p in enumerate(params):
            g_rng = np.random.default_rng([7, i])
            pos = S.gravity_only(p, 64, g_rng)
            halos = S.find_halos(pos, float(p[0]), 64)
            moved = baryons.baryonify(pos, halos.position, halos.mass, float(p[0]),
                                      baryons.suite_parameters(p, suite), S.BOX_MPC_H)
            p0 = nbody.particle_power_spectrum(pos, S.BOX_MPC_H, 128, edges)[1]
            p1 = nbody.particle_power_spectrum(moved, S.BOX_MPC_H, 128, edges)[1]
            rows.append((p1 / p0)[[0, 2, 4]])
        rows = np.array(rows)
        suppression[suite] = {str(kk): {"min": float(rows[:, j].min()), "median": float(np.median(rows[:, j])),
                                        "max": float(rows[:, j].max()),
                                        "camels_range": CAMELS_RANGES[suite][kk]}
                              for j, kk in enumerate((1, 5, 10))}
        suppression[suite]["values"] = rows.round(3).tolist()
        print(suite, {kk: (round(v["min"], 2), round(v["median"], 2), round(v["max"], 2))
                      for kk, v in suppression[suite].items() if kk != "values"})
    out["feedback_suppression"] = suppression
    out["seconds"] = round(time.time() - t0, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "camels_realism.json").write_text(json.dumps(out, indent=1))
    _figure(out, k, args.out / "camels_realism.png")
    print(f"{out['seconds']} s; wrote {args.out / 'camels_realism.json'} and camels_realism.png")


def _figure(out: dict, k: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    g = out["gravity_only_25mpc_64cubed"]
    axes[0].errorbar(g["k"], g["p_over_halofit"], g["scatter_of_mean"], marker="o", label="25 Mpc/h, 64³ (simulator)")
    for name, ratio in out["box_size_ladder_same_spacing"].items():
        axes[0].plot(k, ratio, marker=".", ls="--", label=name)
    axes[0].axhline(1, color="k", lw=0.5)
    axes[0].fill_between([0.3, 3], 0.9, 1.1, color="grey", alpha=0.2, label="±10 % of halofit")
    axes[0].set(xscale="log", xlabel="k [h/Mpc]", ylabel="P(k) / halofit", title="gravity only, Ωm 0.3, σ8 0.8")
    axes[0].set_xticks([0.3, 0.5, 1, 2, 3], ["0.3", "0.5", "1", "2", "3"])
    axes[0].minorticks_off()
    axes[0].legend(fontsize=7)
    for ax, suite in zip(axes[1:], ("tng", "simba")):
        s = out["feedback_suppression"][suite]
        values = np.array(s["values"])
        for row in values:
            ax.plot([1, 5, 10], row, color="C0", alpha=0.3)
        for kk in (1, 5, 10):
            lo, hi = s[str(kk)]["camels_range"]
            ax.plot([kk, kk], [lo, hi], color="C3", lw=6, alpha=0.4)
        ax.plot([], [], color="C3", lw=6, alpha=0.4, label="CAMELS LH range (syren-baryon fits, 2.5–97.5 %)")
        ax.plot([], [], color="C0", label="simulator, 24 LH points")
        ax.set(xscale="log", xlabel="k [h/Mpc]", ylabel="P_baryonified / P_gravity-only", ylim=(0.2, 1.1),
               title=f"{S.SUITES[suite]}-like feedback")
        ax.set_xticks([1, 5, 10], ["1", "5", "10"])
        ax.minorticks_off()
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
