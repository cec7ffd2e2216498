"""Measure the toy benchmark's domain gap: source-only training over several seeds, scored on held-out source
clips and on target validation clips.

    python scripts/toy_domain_gap.py --seeds 1,2,3 [hydra overrides ...]

Prints one row per seed and the mean +- std, and writes them to outputs/toy_domain_gap/summary.json. The
figures in README.md come from this script.
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated seeds")
    parser.add_argument("--out", type=Path, default=Path("outputs/toy_domain_gap"))
    parser.add_argument("overrides", nargs="*", help="Hydra overrides passed to every run")
    args = parser.parse_args()

    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        out_dir = args.out / f"seed{seed}"
        cfg = compose_config(
            "train", ["dataset=toy", "method=source_only", f"seed={seed}", *args.overrides], out_dir
        )
        start = time.perf_counter()
        metrics = train(cfg)
        rows.append(
            {
                "seed": seed,
                "target_mIoU": metrics["target"]["mIoU"],
                "source_mIoU": metrics["source"]["mIoU"],
                "seconds": time.perf_counter() - start,
            }
        )

    table = Table(title="Toy benchmark, source-only, final checkpoints (mIoU %)")
    for column in ("seed", "target (real) val", "source (synthetic) val", "wall time (s)"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            str(row["seed"]),
            f"{row['target_mIoU']:.2f}",
            f"{row['source_mIoU']:.2f}",
            f"{row['seconds']:.0f}",
        )
    summary = {"runs": rows, "overrides": args.overrides}
    for key in ("target_mIoU", "source_mIoU"):
        values = [row[key] for row in rows]
        summary[key] = {"mean": statistics.mean(values), "std": statistics.pstdev(values)}
    table.add_row(
        "mean +- std",
        *(f"{summary[k]['mean']:.2f} +- {summary[k]['std']:.2f}" for k in ("target_mIoU", "source_mIoU")),
        "",
    )
    Console().print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
