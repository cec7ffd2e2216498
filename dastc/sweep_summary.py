"""The table at the end of a sweep (``python -m dastc.train -m ...``, an ``hparams_search=`` study, a SLURM array):
one row per job with its overrides and scores, printed and written as ``summary.md`` / ``summary.csv`` into the
sweep directory. A Hydra callback (conf/hydra/default.yaml), so it runs once, after every job, whatever the
launcher; jobs that failed or are still missing a ``metrics.json`` are listed as such."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table


def collect_jobs(sweep_dir: str | Path) -> list[dict]:
    """Per job directory of a sweep (numbered sub-directories), in job order: its number, the overrides that
    set it apart (from ``.hydra/overrides.yaml``, less those every job has) and, where it finished, target and
    source mIoU from ``metrics.json``."""
    jobs = []
    folders = [p for p in Path(sweep_dir).iterdir() if p.is_dir() and p.name.isdigit()]
    for folder in sorted(folders, key=lambda p: int(p.name)):
        overrides_file = folder / ".hydra" / "overrides.yaml"
        overrides = list(OmegaConf.load(overrides_file)) if overrides_file.is_file() else []
        job: dict[str, Any] = {"job": int(folder.name), "overrides": overrides, "dir": str(folder)}
        metrics_file = folder / "metrics.json"
        if metrics_file.is_file():
            metrics = json.loads(metrics_file.read_text())["metrics"]
            job.update({f"{name} mIoU": result["mIoU"] for name, result in metrics.items()})
        jobs.append(job)
    # The overrides every job shares say nothing about the difference between them: keep the rest.
    shared = set.intersection(*(set(job["overrides"]) for job in jobs)) if len(jobs) > 1 else set()
    for job in jobs:
        job["overrides"] = " ".join(o for o in job["overrides"] if o not in shared)
    return jobs


def _columns(jobs: list[dict]) -> list[str]:
    scores = sorted({k for job in jobs for k in job if k.endswith(" mIoU")}, key=lambda k: k != "target mIoU")
    return ["job", "overrides", *scores]


def _cell(value: Any) -> str:
    if value is None:
        return "failed / missing"
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.2f}"
    return str(value)


def summary_markdown(jobs: list[dict]) -> str:
    columns = _columns(jobs)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(job.get(c)) for c in columns) + " |" for job in jobs]
    return "\n".join(lines) + "\n"


def summary_csv(jobs: list[dict]) -> str:
    columns = [*_columns(jobs), "dir"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for job in jobs:
        writer.writerow(["" if job.get(c) is None else job[c] for c in columns])
    return out.getvalue()


def write_summary(sweep_dir: str | Path, console: Console | None = None) -> list[dict]:
    """Collect, print and write the sweep's table; returns the jobs."""
    jobs = collect_jobs(sweep_dir)
    if not jobs:
        return jobs
    Path(sweep_dir, "summary.md").write_text(summary_markdown(jobs))
    Path(sweep_dir, "summary.csv").write_text(summary_csv(jobs))
    table = Table(title=f"Sweep {sweep_dir}")
    columns = _columns(jobs)
    for column in columns:
        table.add_column(column, justify="right" if column.endswith("mIoU") else "left")
    best = max((j for j in jobs if "target mIoU" in j), key=lambda j: j["target mIoU"], default=None)
    for job in jobs:
        style = "bold" if job is best else None
        table.add_row(*(_cell(job.get(c)) for c in columns), style=style)
    console = console or Console()
    console.print(table)
    console.print(f"summary.md and summary.csv written to {sweep_dir}", highlight=False)
    return jobs


class SweepSummary(Callback):
    """Hydra callback: the summary table once the last job of a multirun has returned."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if sweep_dir.is_dir():
            write_summary(sweep_dir)
