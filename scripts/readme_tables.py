"""Rebuild README.md's measured tables from the raw outputs under ``results/``, or check that they agree.

    python scripts/readme_tables.py            # rewrite the tables between README's results markers
    python scripts/readme_tables.py --check    # exit 1, naming the table, when README and results/ differ

Each table sits between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->`` in README.md and is rendered
from ``results/<dir>/`` (the JSON the measuring script wrote; its README.md there gives the command, commit,
date and machine), so a figure in the README cannot drift from its evidence.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"
README = ROOT / "README.md"

LABELS = {
    "source_only": "`source_only`",
    "source_only+hist_match": "`source_only` + `method.hist_match=true`",
    "tps": "`tps`",
    "dastc": "`dastc`",
}
VS_LABELS = {**LABELS, "source_only+hist_match": "`source_only` + histogram matching"}


def _pm(stats: dict) -> str:
    return f"{stats['mean']:.2f} +- {stats['std']:.2f}"


def toy_methods() -> str:
    """The 3-seed comparison (scripts/compare_methods.py's summary.json): per method, then DA-STC's paired wins."""
    summary = json.loads((RESULTS / "toy_methods" / "summary.json").read_text())
    best = max(summary["results"], key=lambda name: summary["results"][name]["target_mIoU"]["mean"])
    lines = [
        "| method | target val mIoU | held-out source val mIoU | per seed (target) | s per run |",
        "|---|---|---|---|---|",
    ]
    for name, result in summary["results"].items():
        target = _pm(result["target_mIoU"])
        target = f"**{target}**" if name == best else target
        seeds = " / ".join(f"{run['target_mIoU']:.1f}" for run in result["runs"])
        seconds = sum(run["seconds"] for run in result["runs"]) / len(result["runs"])
        lines.append(
            f"| {LABELS.get(name, name)} | {target} | {_pm(result['source_mIoU'])} | {seeds} | {seconds:.0f} |"
        )
    lines += ["", "| vs | target mIoU difference | seeds won |", "|---|---|---|"]
    for name, paired in summary["paired"].items():
        diff = f"{paired['mean']:+.2f} +- {paired['std']:.2f}"
        lines.append(f"| {VS_LABELS.get(name, name)} | {diff} | {paired['wins']}/{len(paired['runs'])} |")
    return "\n".join(lines)


def default_job() -> str:
    """The summary line ``python -m dastc.train`` printed (its metrics.json)."""
    result = json.loads((RESULTS / "default_job" / "metrics.json").read_text())
    metrics = result["metrics"]
    return (
        "```\n"
        f"Target mIoU ({result['dataset']}, final checkpoint, step {result['step']}): "
        f"{metrics['target']['mIoU']:.2f} | source mIoU {metrics['source']['mIoU']:.2f}  -> "
        "outputs/train/runs/<time>\n```"
    )


def benchmark_train() -> str:
    """scripts/benchmark_train.py's JSON: step time, throughput, peak memory and FLOPs per method."""
    result = json.loads((RESULTS / "benchmark_train" / "benchmark_train.json").read_text())
    names = {"source_only": "source-only", "dastc": "DA-STC"}
    lines = ["| | step | clips/s | peak RSS | GFLOP / step |", "|---|---|---|---|---|"]
    for step in result["steps"]:
        lines.append(
            f"| {names.get(step['method'], step['method'])} | {step['step_s']:.2f} s | "
            f"{step['clips_per_s']:.2f} | {step['peak_memory_mb'] / 1000:.1f} GB | {step['gflops_per_step']:.0f} |"
        )
    loader = result["loader"]
    lines.append(
        f"| loader ({loader['dataset']} benchmark, default settings) | | {loader['clips_per_s']:.0f} | | |"
    )
    return "\n".join(lines)


TABLES = {"toy_methods": toy_methods, "default_job": default_job, "benchmark_train": benchmark_train}


def block(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- results:{name} -->\n)(.*?)(\n<!-- /results:{name} -->)", re.S)


def rebuild(text: str) -> tuple[str, list[str]]:
    """README text with every table rendered anew, and the names of those that changed (or lack markers)."""
    changed = []
    for name, render in TABLES.items():
        pattern = block(name)
        match = pattern.search(text)
        if match is None:
            changed.append(f"{name} (no <!-- results:{name} --> markers in README.md)")
            continue
        table = render()
        if match.group(2) != table:
            changed.append(name)
            text = text[: match.start(2)] + table + text[match.end(2) :]
    return text, changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="only check; exit 1 when a table differs")
    args = parser.parse_args(argv)
    text, changed = rebuild(README.read_text())
    if args.check:
        if changed:
            print(f"README.md disagrees with results/ in: {', '.join(changed)}", file=sys.stderr)
            return 1
        print("README.md agrees with results/")
        return 0
    README.write_text(text)
    print(f"rebuilt: {', '.join(changed) or 'nothing changed'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
