"""Writing and printing the per-class results of a validation."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from rich.console import Console
from rich.table import Table


def _fmt(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.2f}"


def subset_names(metrics: dict[str, dict]) -> list[str]:
    """The means reported beside mIoU (``dataset.report_subsets``, e.g. mIoU13), in the order stored."""
    return [k for k in next(iter(metrics.values())) if k not in ("mIoU", "IoU")]


def markdown_table(metrics: dict[str, dict]) -> str:
    """One row per validation set: per-class IoU (%), mIoU, then any subset means (mIoU13 ...)."""
    names, subsets = list(next(iter(metrics.values()))["IoU"]), subset_names(metrics)
    lines = [
        "| set | " + " | ".join([*names, "mIoU", *subsets]) + " |",
        "|---" * (len(names) + len(subsets) + 2) + "|",
    ]
    for set_name, result in metrics.items():
        cells = [_fmt(result["IoU"][n]) for n in names] + [f"**{_fmt(result['mIoU'])}**"]
        cells += [_fmt(result[sub]) for sub in subsets]
        lines.append(f"| {set_name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def csv_table(metrics: dict[str, dict]) -> str:
    """One row per class, ``mIoU`` and any subset means, one column per validation set (IoU in %, empty when
    undefined)."""
    names = list(next(iter(metrics.values()))["IoU"])
    rows = [["class", *metrics]]
    rows += [[name, *(_csv(result["IoU"][name]) for result in metrics.values())] for name in names]
    for mean in ["mIoU", *subset_names(metrics)]:
        rows.append([mean, *(_csv(result[mean]) for result in metrics.values())])
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def _csv(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.4f}"


def write_metrics(out_dir: str | Path, metrics: dict[str, dict], info: dict) -> Path:
    """``metrics.json`` (numbers + run info), ``metrics.csv`` and ``metrics.md`` (tables) in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {**info, "metrics": metrics}
    (out_dir / "metrics.json").write_text(json.dumps(payload, indent=2, allow_nan=True))
    if not metrics:  # no validation set at all (dataset.val=null): the run info only
        return out_dir / "metrics.json"
    (out_dir / "metrics.csv").write_text(csv_table(metrics))
    header = ", ".join(f"{k}: {v}" for k, v in info.items() if k != "candidates")
    text = f"# IoU per class (%)\n\n{header}\n\n{markdown_table(metrics)}"
    if info.get("candidates"):  # select=best: every checkpoint scored
        rows = [f"| {c['step']} | {c['target_mIoU']:.2f} | {c['checkpoint']} |" for c in info["candidates"]]
        text += "\n## Checkpoints scored (target mIoU)\n\n| step | mIoU | file |\n|---|---|---|\n"
        text += "\n".join(rows) + "\n"
    (out_dir / "metrics.md").write_text(text)
    return out_dir / "metrics.json"


def print_metrics(console: Console, metrics: dict[str, dict], title: str) -> None:
    """A table with one row per class and one column per validation set."""
    names = list(next(iter(metrics.values()))["IoU"])
    table = Table(title=title)
    table.add_column("class")
    for set_name in metrics:
        table.add_column(set_name, justify="right")
    for name in names:
        table.add_row(name, *[_fmt(result["IoU"][name]) for result in metrics.values()])
    table.add_row(
        "[bold]mIoU[/bold]", *[f"[bold]{_fmt(result['mIoU'])}[/bold]" for result in metrics.values()]
    )
    for sub in subset_names(metrics):
        table.add_row(sub, *[_fmt(result[sub]) for result in metrics.values()])
    console.print(table)


def report(console: Console, out_dir: str | Path, metrics: dict[str, dict], info: dict, label: str) -> None:
    """Write ``metrics.json``/``.md`` into ``out_dir``, print the table and the one-line ``Target mIoU`` summary
    (without a target set, the other sets' scores; without any set, ``metrics.json`` only)."""
    write_metrics(out_dir, metrics, info)
    if not metrics:
        return
    print_metrics(console, metrics, f"IoU per class (%), {info['dataset']}, {label}")
    if "target" not in metrics:  # dataset.val=null: only the extra (source) sets were scored
        scores = " | ".join(f"{name} mIoU {m['mIoU']:.2f}" for name, m in metrics.items())
        console.print(f"Scores ({info['dataset']}, {label}): {scores}  -> {out_dir}", highlight=False)
        return
    extra = "".join(f" | {name} mIoU {m['mIoU']:.2f}" for name, m in metrics.items() if name != "target")
    subsets = "".join(f" ({sub} {metrics['target'][sub]:.2f})" for sub in subset_names(metrics))
    console.print(
        f"Target mIoU ({info['dataset']}, {label}): {metrics['target']['mIoU']:.2f}{subsets}{extra}  -> {out_dir}",
        highlight=False,
    )


def logged_metrics(run_dir: str | Path) -> dict[str, tuple[list[int], list[float]]]:
    """What a run's CSV logger wrote (``<run>/csv/metrics.csv``): per metric name, its (steps, values) in the
    order logged, empty cells skipped. For training curves (notebooks/03_training_curves.ipynb)."""
    path = Path(run_dir) / "csv" / "metrics.csv"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: curves come from the CSV logger (logger=csv, the default, or a list with csv)"
        )
    curves: dict[str, tuple[list[int], list[float]]] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            step = int(row["step"])
            for name, value in row.items():
                if name in ("step", "epoch") or value in ("", None):
                    continue
                steps, values = curves.setdefault(name, ([], []))
                steps.append(step)
                values.append(float(value))
    return curves
