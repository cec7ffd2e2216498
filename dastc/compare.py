"""Runs side by side: per-class IoU and means on target val, with the paper's rows where it has some
(``scripts/compare_runs.py`` and the end of a two-stage run print these tables)."""

from __future__ import annotations

import json
import math
from pathlib import Path

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


def results_table(classes: list[str], rows: list[tuple[str, dict]], title: str) -> Table:
    """The rows as a rich table: one column per class, then the means."""
    table = Table(title=title)
    means = means_of(rows)
    for column in ("run", *classes, *means):
        table.add_column(column, justify="left" if column == "run" else "right")
    for label, scores in rows:
        table.add_row(
            label, *(_cell(scores["IoU"].get(c)) for c in classes), *(_cell(scores.get(m)) for m in means)
        )
    return table
