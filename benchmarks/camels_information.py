"""How much of Omega_m and sigma_8 a single simulated map holds: a summary-statistics baseline for the camels CNN.

Per map: the log10 mean, the mean, spread, skewness and 5 percentiles of log10 Mtot, the power spectrum of the
mean-free log map in 8 bins, and the number of local maxima above 10^12.5, 10^13 and 10^13.5 Msun/h per pixel
(halo counts). A gradient-boosted regressor (scikit-learn HistGradientBoosting) per parameter is trained on the
task's training simulations and scored on its test simulations (the same seeded split, in-suite and across
suites), with the same r2 as metrics.json. The ``mtot_nomean`` variant drops the two features that carry the map
mean and counts peaks above 30, 100 and 300 times the map's mean instead (absolute thresholds would carry it).

    python benchmarks/camels_information.py [--n-sims 500] [--map-size 64] [--seed 0]
        # writes benchmarks/results/camels_information.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.ndimage import maximum_filter
from scipy.stats import skew

from astrobench.core import metrics as M
from astrobench.core.task import cached
from astrobench.tasks.camels.data import load_camels, split_sims
from astrobench.tasks.camels.simulate import BOX_MPC_H, MAPS_PER_SIM, SIMULATOR_VERSION
from astrobench.tasks.camels.simulate import simulate as simulate_camels
from astrobench.tasks.camels.task import CamelsTask


def features(maps: np.ndarray) -> np.ndarray:
    n = maps.shape[-1]
    pixel_area = (BOX_MPC_H / n) ** 2
    log_map = np.log10(maps)
    mean_free = log_map - log_map.mean(axis=(1, 2), keepdims=True)
    power = np.abs(np.fft.rfft2(mean_free)) ** 2
    ky, kx = np.fft.fftfreq(n)[:, None], np.fft.rfftfreq(n)[None, :]
    k = np.sqrt(ky**2 + kx**2)
    edges = np.geomspace(1.0 / n, 0.5, 9)
    spectrum = np.stack([power[:, (k >= a) & (k < b)].mean(axis=1) for a, b in zip(edges[:-1], edges[1:])], 1)
    peaks = maps == maximum_filter(maps, size=(1, 3, 3), mode="wrap")
    counts = [np.sum(peaks & (maps * pixel_area > 10**t), axis=(1, 2)) for t in (12.5, 13.0, 13.5)]
    contrast = maps / maps.mean(axis=(1, 2), keepdims=True)
    counts += [np.sum(peaks & (contrast > t), axis=(1, 2)) for t in (30, 100, 300)]
    return np.column_stack([np.log10(maps.mean(axis=(1, 2))), log_map.mean(axis=(1, 2)), log_map.std(axis=(1, 2)),
                            skew(log_map.reshape(len(maps), -1), axis=1),
                            np.percentile(mean_free, [5, 25, 50, 75, 95], axis=(1, 2)).T, np.log10(spectrum),
                            np.log1p(np.column_stack(counts))])  # last 6: absolute, then relative counts


ABSOLUTE = slice(None, -3)  # every feature but the relative peak counts
MEAN_FREE = np.r_[2:17, 20:23]  # without the two mean-carrying features and the absolute counts


def main() -> None:
    from sklearn.ensemble import HistGradientBoostingRegressor

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-sims", type=int, default=CamelsTask().options("full")["n_sims"])
    parser.add_argument("--map-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    key = {"n_sims": args.n_sims, "map_size": args.map_size, "seed": args.seed}  # the camels run's cache key

    def build(folder: Path) -> None:
        simulate_camels(folder, n_sims=args.n_sims, seed=args.seed, map_size=args.map_size)
        (folder / "done.json").write_text(json.dumps(key))

    folder = cached("camels", SIMULATOR_VERSION, key, build, "done.json").parent
    suites = load_camels(folder)
    splits = {s: split_sims(v.n_sims, (0.9, 0.05, 0.05), args.seed) for s, v in suites.items()}
    feats = {s: features(np.asarray(v.maps["mtot"], dtype=np.float64)) for s, v in suites.items()}
    result: dict[str, dict] = {"n_sims": args.n_sims, "map_size": args.map_size, "seed": args.seed}
    for variant, columns in (("mtot", ABSOLUTE), ("mtot_nomean", MEAN_FREE)):
        for train, suite in suites.items():
            rows = (splits[train][0][:, None] * MAPS_PER_SIM + np.arange(MAPS_PER_SIM)).ravel()
            for j, name in ((0, "omega_m"), (1, "sigma_8")):
                y = np.repeat(suite.params[:, j], MAPS_PER_SIM)
                model = HistGradientBoostingRegressor(max_iter=400, random_state=args.seed)
                model.fit(feats[train][rows][:, columns], y[rows])
                for test, other in suites.items():
                    sims = splits[test][2]
                    test_rows = (sims[:, None] * MAPS_PER_SIM + np.arange(MAPS_PER_SIM)).ravel()
                    truth = np.repeat(other.params[:, j], MAPS_PER_SIM)[test_rows]
                    pred = model.predict(feats[test][test_rows][:, columns])
                    r2, err = M.bootstrap(M.r2, truth, pred, groups=np.repeat(sims, MAPS_PER_SIM))
                    result.setdefault(f"{train}_to_{test}", {}).setdefault(variant, {})[name] = {"r2": r2,
                                                                                                 "r2_err": err}
    out = Path(__file__).parent / "results" / "camels_information.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
