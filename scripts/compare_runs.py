"""One table across runs: per-class IoU and mIoU on target val, with the paper's rows (method.md section 8)
alongside when the runs are on ``dataset=synthia`` or ``dataset=viper``.

    python scripts/compare_runs.py RUN_OR_RESULT [RUN_OR_RESULT ...] [--markdown FILE] [--no-paper]

Each argument is a run directory (its ``metrics.json``: the final checkpoint), an evaluation directory
(``RUN/eval/<time>``, e.g. from ``python -m dastc.eval select=best``) or a ``metrics.json`` file. Every row says
how its checkpoint was selected. All runs must be on the same benchmark.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from rich.console import Console
from rich.table import Table

from dastc.metrics.published import published


def load_result(path: Path) -> dict:
    """The ``metrics.json`` that ``path`` names, with ``path`` recorded for its label."""
    file = path if path.is_file() else path / "metrics.json"
    if not file.is_file():
        raise SystemExit(f"error: {path} holds no metrics.json (train or evaluate the run first)")
    result = json.loads(file.read_text())
    return {**result, "source_path": str(path)}


def means_of(rows: list[tuple[str, dict]]) -> list[str]:
    """mIoU, then any other mean the rows report (the image extension's mIoU13)."""
    extra = {k for _, scores in rows for k in scores if k not in ("IoU", "mIoU")}
    return ["mIoU", *sorted(extra)]


def rows_of(results: list[dict], paper: bool) -> tuple[list[str], list[tuple[str, dict]]]:
    """The scored classes and ``(label, {"IoU", "mIoU", ...})`` rows: each run's target scores, then the
    paper's (per class on the video benchmarks, means only on the image ones)."""
    benchmarks = {r["dataset"] for r in results}
    if len(benchmarks) > 1:
        raise SystemExit(
            f"error: the runs are on different benchmarks {sorted(benchmarks)}: compare one at a time"
        )
    (benchmark,) = benchmarks
    classes = list(results[0]["metrics"]["target"]["IoU"])
    rows = []
    for r in results:
        name = "/".join(Path(r["source_path"]).parts[-2:])
        label = f"{name} ({r['method']}, {r['selection']}, step {r['step']})"
        rows.append((label, r["metrics"]["target"]))
    if paper:
        rows += [(f"paper: {method}", scores) for method, scores in published(benchmark).items()]
    return classes, rows


def _cell(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.1f}"


def markdown(classes: list[str], rows: list[tuple[str, dict]]) -> str:
    means = means_of(rows)
    lines = [
        "| run | " + " | ".join([*classes, *means]) + " |",
        "|---" * (len(classes) + len(means) + 1) + "|",
    ]
    for label, scores in rows:
        cells = [_cell(scores["IoU"].get(c)) for c in classes] + [f"**{_cell(scores['mIoU'])}**"]
        cells += [_cell(scores.get(m)) for m in means[1:]]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "runs", nargs="+", type=Path, help="run directories, eval directories or metrics.json"
    )
    parser.add_argument("--markdown", type=Path, help="also write the table as markdown to this file")
    parser.add_argument("--no-paper", action="store_true", help="leave out the published rows")
    args = parser.parse_args()
    classes, rows = rows_of([load_result(p) for p in args.runs], paper=not args.no_paper)
    table = Table(title="Target val IoU per class (%)")
    means = means_of(rows)
    for column in ("run", *classes, *means):
        table.add_column(column, justify="left" if column == "run" else "right")
    for label, scores in rows:
        table.add_row(
            label, *(_cell(scores["IoU"].get(c)) for c in classes), *(_cell(scores.get(m)) for m in means)
        )
    Console(width=max(120, 12 * len(classes) + 60)).print(table)
    if args.markdown:
        args.markdown.write_text(markdown(classes, rows))
        print(f"markdown: {args.markdown}")


if __name__ == "__main__":
    main()
