"""Runs side by side: per-class IoU and means on target val, with the paper's rows where it has some
(``scripts/compare_runs.py`` and the end of a two-stage run print these tables). A ``checkpoint`` column says
how each row's checkpoint was chosen, so final-checkpoint figures are compared with final-checkpoint figures
(docs/benchmarks.md, Evaluation protocol)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from dastc.metrics.published import BEST_ON_VAL, FINAL, paper_rows


@dataclass(frozen=True)
class Row:
    """One table row: its label, how its checkpoint was chosen, its scores (``{"IoU": {...}, "mIoU": ...}``)
    and, for a published row, where the figures were read and anything to know about them."""

    label: str
    checkpoint: str
    scores: dict
    source: str = ""
    note: str = ""


def load_result(path: Path) -> dict:
    """The ``metrics.json`` that ``path`` names, with ``path`` recorded for its label."""
    file = path if path.is_file() else path / "metrics.json"
    if not file.is_file():
        raise SystemExit(f"error: {path} holds no metrics.json (train or evaluate the run first)")
    result = json.loads(file.read_text())
    return {**result, "source_path": str(path)}


def checkpoint_of(selection: str) -> str:
    """A run's ``selection`` (metrics.json) in the checkpoint column's short words."""
    if selection == "final checkpoint":
        return FINAL
    if match := re.fullmatch(r"best of (\d+) checkpoints, selected on target val", selection):
        return f"best of {match.group(1)} on val"
    return {"given checkpoint": "given"}.get(selection, selection)


def means_of(rows: list[Row]) -> list[str]:
    """mIoU, then any other mean the rows report (the image extension's mIoU13)."""
    extra = {k for row in rows for k in row.scores if k not in ("IoU", "mIoU")}
    return ["mIoU", *sorted(extra)]


def rows_of(results: list[dict], paper: bool) -> tuple[list[str], list[Row]]:
    """The scored classes and the rows: each run's target scores, then the paper's (per class on the video
    benchmarks, means only on the image ones)."""
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
        label = f"{name} ({r['method']}, step {r['step']})"
        rows.append(Row(label, checkpoint_of(r["selection"]), r["metrics"]["target"]))
    if paper:
        for p in paper_rows(benchmark):
            iou = dict(zip(classes, p.iou, strict=True)) if p.iou else {}
            rows.append(Row(f"paper: {p.method}", p.protocol, {"IoU": iou, **p.means}, p.source, p.note))
    return classes, rows


def footnotes(rows: list[Row]) -> list[str]:
    """What the checkpoint column means where the table mixes best-on-val with other rows, where the published
    rows come from, and their notes."""
    lines = []
    if any(r.checkpoint == BEST_ON_VAL for r in rows) and any(r.checkpoint != BEST_ON_VAL for r in rows):
        lines.append(
            f"checkpoint: '{BEST_ON_VAL}' rows report the best of many checkpoints scored on this same val set, "
            f"an optimistic figure: a '{FINAL}' run compares with '{FINAL}' rows; for '{BEST_ON_VAL}' rows, "
            "score its checkpoints with python -m dastc.eval select=best."
        )
    sources: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        if r.source:
            sources.setdefault((r.source, r.checkpoint), []).append(r.label.removeprefix("paper: "))
    for (source, checkpoint), methods in sources.items():
        named = "paper rows" if len(sources) == 1 else ", ".join(methods)
        lines.append(f"{named}: {source} ({checkpoint}).")
    lines += [f"{r.label.removeprefix('paper: ')}: {r.note}." for r in rows if r.note]
    return lines


def _cell(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.1f}"


def markdown(classes: list[str], rows: list[Row]) -> str:
    means = means_of(rows)
    lines = [
        "| run | checkpoint | " + " | ".join([*classes, *means]) + " |",
        "|---" * (len(classes) + len(means) + 2) + "|",
    ]
    for row in rows:
        cells = [_cell(row.scores["IoU"].get(c)) for c in classes] + [f"**{_cell(row.scores['mIoU'])}**"]
        cells += [_cell(row.scores.get(m)) for m in means[1:]]
        lines.append(f"| {row.label} | {row.checkpoint} | " + " | ".join(cells) + " |")
    notes = footnotes(rows)
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def results_table(classes: list[str], rows: list[Row], title: str) -> Table:
    """The rows as a rich table: the run, how its checkpoint was chosen, one column per class, then the means;
    the footnotes below."""
    table = Table(title=title, caption="\n".join(footnotes(rows)) or None, caption_justify="left")
    means = means_of(rows)
    for column in ("run", "checkpoint", *classes, *means):
        table.add_column(column, justify="left" if column in ("run", "checkpoint") else "right")
    for row in rows:
        table.add_row(
            row.label,
            row.checkpoint,
            *(_cell(row.scores["IoU"].get(c)) for c in classes),
            *(_cell(row.scores.get(m)) for m in means),
        )
    return table
