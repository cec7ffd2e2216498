"""Train source-only, TPS and DA-STC (and, on request, each DA-STC ablation) on one benchmark for several
seeds, and print target mIoU as mean +- std, with held-out source mIoU where the benchmark scores it.

    python scripts/compare_methods.py --seeds 1,2,3 [--methods source_only,source_only+hist_match,tps,dastc]
                                      [--ablations] [--out outputs/compare_methods] [hydra overrides ...]

``--methods`` picks among the variants below: the plain source-only baseline, source-only given TPS/DA-STC's
histogram matching (so that its share of their gain shows), TPS and DA-STC (the default four), and DA-STC with
masked image consistency (``dastc+mic``, e.g. ``--methods dastc,dastc+mic``).

Every run is a normal ``dastc.train`` run with its own directory ``<out>/<variant>/seed<N>`` (checkpoints,
metrics.json, logs), so a run can be re-evaluated or inspected later; the summary goes to ``<out>/summary.json``.
The overrides apply to every run, e.g. ``dataset=synthia backbone=accel`` (default: the toy benchmark). A second
table gives the last variant (DA-STC) minus each other one, seed by seed; ``--show summary.json`` prints both
tables of an earlier comparison again. The figures in README.md come from this script.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from dastc.config import compose_config
from dastc.train import train

VARIANTS = {
    "source_only": ["method=source_only"],
    "source_only+hist_match": ["method=source_only", "method.hist_match=true"],
    "tps": ["method=tps"],
    "dastc": ["method=dastc"],
    # Extension, not in the paper: DA-STC with masked image consistency (MIC, Hoyer et al., CVPR 2023).
    "dastc+mic": ["method=dastc", "method.mic.enabled=true"],
}
# What --methods trains by default: the paper's methods and the source-only baselines.
DEFAULT_METHODS = ["source_only", "source_only+hist_match", "tps", "dastc"]
# Each DA-STC component switched off alone (docs/method.md), for --ablations.
ABLATIONS = {
    "dastc -image fusion": ["method=dastc", "method.fusion.image=false"],
    "dastc -feature fusion": ["method=dastc", "method.fusion.feature=false"],
    "dastc -rare-class paste": ["method=dastc", "method.fusion.rare_class_paste=false"],
    "dastc -alignment": ["method=dastc", "method.align.enabled=false"],
}


def variants(methods: list[str], ablations: bool) -> dict[str, list[str]]:
    """Name -> overrides of every configuration to train."""
    unknown = [name for name in methods if name not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown --methods {unknown}: choose from {', '.join(VARIANTS)}")
    runs = {name: VARIANTS[name] for name in methods}
    if ablations:
        runs.update(ABLATIONS)
    return runs


def summarise(values: list[float]) -> dict:
    return {"mean": statistics.mean(values), "std": statistics.pstdev(values), "runs": values}


def paired_differences(results: dict[str, dict], reference: str) -> dict[str, dict]:
    """Per other variant: ``reference`` minus it, seed by seed, on target mIoU. A seed fixes the initial weights,
    the warm-up and the data order for every variant, so the per-seed difference is the fair comparison."""
    ours = {row["seed"]: row["target_mIoU"] for row in results[reference]["runs"]}
    out = {}
    for name, result in results.items():
        if name != reference:
            diffs = [ours[row["seed"]] - row["target_mIoU"] for row in result["runs"] if row["seed"] in ours]
            out[name] = {**summarise(diffs), "wins": sum(d > 0 for d in diffs)}
    return out


def print_tables(summary: dict, console: Console) -> None:
    """The results table and, against ``summary["reference"]``, the paired differences table."""
    results, seeds = summary["results"], ",".join(map(str, summary["seeds"]))
    table = Table(title=f"Final checkpoints, mIoU % over seeds {seeds} (mean +- std)")
    scored = [k for k in ("target_mIoU", "source_mIoU") if all(k in r for r in results.values())]
    for column in ("method", *(k.split("_")[0] + " val" for k in scored), "per seed (target)", "s/run"):
        table.add_column(column, justify="right")
    for name, result in results.items():
        table.add_row(
            name,
            *(f"{result[k]['mean']:.2f} +- {result[k]['std']:.2f}" for k in scored),
            " ".join(f"{v:.1f}" for v in result["target_mIoU"]["runs"]),
            f"{statistics.mean(r['seconds'] for r in result['runs']):.0f}",
        )
    console.print(table)
    reference = summary["reference"]
    if len(results) > 1:
        table = Table(title=f"{reference} minus each, target mIoU, same seed (paired)")
        for column in ("vs", "difference (mean +- std)", "seeds won"):
            table.add_column(column, justify="right")
        for name, diff in summary["paired"].items():
            table.add_row(
                name, f"{diff['mean']:+.2f} +- {diff['std']:.2f}", f"{diff['wins']}/{len(diff['runs'])}"
            )
        console.print(table)


def with_comparison(summary: dict) -> dict:
    """``summary`` with its reference (DA-STC when it ran, else the last variant) and the paired differences."""
    results = summary["results"]
    reference = "dastc" if "dastc" in results else list(results)[-1]
    return {**summary, "reference": reference, "paired": paired_differences(results, reference)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated seeds (default 1,2,3)")
    parser.add_argument(
        "--methods",
        default=",".join(DEFAULT_METHODS),
        help=f"comma-separated, of {', '.join(VARIANTS)} (default: {', '.join(DEFAULT_METHODS)})",
    )
    parser.add_argument("--ablations", action="store_true", help="also DA-STC with each component off")
    parser.add_argument("--out", type=Path, default=Path("outputs/compare_methods"))
    parser.add_argument("--show", type=Path, help="print the tables of an earlier summary.json and stop")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides passed to every run")
    args = parser.parse_args()
    if args.show:
        print_tables(with_comparison(json.loads(args.show.read_text())), Console())
        return
    seeds = [int(s) for s in args.seeds.split(",")]

    results: dict[str, dict] = {}
    for name, overrides in variants(args.methods.split(","), args.ablations).items():
        rows = []
        for seed in seeds:
            out_dir = args.out / name.replace(" ", "_").replace("+", "_") / f"seed{seed}"
            cfg = compose_config("train", [*overrides, f"seed={seed}", *args.overrides], out_dir)
            start = time.perf_counter()
            metrics = train(cfg)
            rows.append({"seed": seed, "seconds": time.perf_counter() - start, "run_dir": str(out_dir)})
            rows[-1].update({f"{k}_mIoU": v["mIoU"] for k, v in metrics.items()})
        results[name] = {"overrides": overrides, "runs": rows}
        for key in (k for k in rows[0] if k.endswith("_mIoU")):
            results[name][key] = summarise([row[key] for row in rows])

    summary = with_comparison({"seeds": seeds, "overrides": args.overrides, "results": results})
    print_tables(summary, Console())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"summary: {args.out / 'summary.json'}")


if __name__ == "__main__":
    main()
