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
import statistics
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


def _minutes(seconds: float) -> str:
    whole = int(round(seconds))
    return f"{whole // 60} min {whole % 60} s"


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


def toy_mic() -> str:
    """DA-STC with masked image consistency against DA-STC alone (scripts/compare_methods.py --methods
    dastc,dastc+mic): per variant over the seeds, then MIC on minus off seed by seed."""
    summary = json.loads((RESULTS / "toy_mic" / "summary.json").read_text())
    names = {"dastc": "`dastc`", "dastc+mic": "`dastc` + `method.mic.enabled=true`"}
    lines = [
        "| method | target val mIoU | held-out source val mIoU | per seed (target) |",
        "|---|---|---|---|",
    ]
    for name, result in summary["results"].items():
        seeds = " / ".join(f"{run['target_mIoU']:.1f}" for run in result["runs"])
        lines.append(
            f"| {names.get(name, name)} | {_pm(result['target_mIoU'])} | {_pm(result['source_mIoU'])} | {seeds} |"
        )
    paired = summary["paired"]["dastc+mic"]  # dastc minus dastc+mic, seed by seed: flipped to "MIC on - off"
    gains = [-d for d in paired["runs"]]
    mean, std = statistics.mean(gains), statistics.pstdev(gains)
    won = sum(g > 0 for g in gains)
    lines += [
        "",
        "| MIC on minus off (paired, same seed) | per seed | seeds where MIC is higher |",
        "|---|---|---|",
        f"| {mean:+.2f} +- {std:.2f} | {' / '.join(f'{g:+.2f}' for g in gains)} | {won}/{len(gains)} |",
    ]
    return "\n".join(lines)


def default_job() -> str:
    """The summary line ``python -m dastc.train`` printed (its metrics.json)."""
    result = json.loads((RESULTS / "default_job" / "metrics.json").read_text())
    timing = json.loads((RESULTS / "default_job" / "timing.json").read_text())
    metrics = result["metrics"]
    return (
        "```\n"
        f"Target mIoU ({result['dataset']}, final checkpoint, step {result['step']}): "
        f"{metrics['target']['mIoU']:.2f} | source mIoU {metrics['source']['mIoU']:.2f}  -> "
        "outputs/train/runs/<time>\n```\n\n"
        f"That run took {_minutes(timing['wall_s'])} on a {timing['cores']}-core machine, the data already generated."
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


def benchmark_targets() -> str:
    """The training-step benchmark against issue 8's targets: the ratios come from its JSON."""
    result = json.loads((RESULTS / "benchmark_train" / "benchmark_train.json").read_text())
    steps = {step["method"]: step for step in result["steps"]}
    flops = steps["dastc"]["gflops_per_step"] / steps["source_only"]["gflops_per_step"]
    return "\n".join(
        [
            "| target | here |",
            "|---|---|",
            f"| loader >= 2x the step rate | {result['loader']['dataset']} loader "
            f"{result['loader_over_step_rate']:.0f}x the DA-STC step rate; the SYNTHIA/VIPER loaders could not be "
            "timed (no data on this machine): run the script where the data is |",
            f"| DA-STC step <= 3x source-only | not met: {result['dastc_over_source_only']:.1f}x in time, "
            f"{flops:.1f}x in FLOPs. As specified the method runs six student passes with gradients per step "
            "(source, target, two image-level mixes, two feature-level mixes) plus the teacher's, against one for "
            "source-only, so its FLOP ratio is the floor for the time ratio (`method.align.loss=mmd` adds the "
            "authors' (t, t-2) pass back) |",
            "| H100 bf16: DA-STC >= 35% MFU at the paper's size, peak memory <= 40 GB | not measured: no GPU was "
            "lent to this work. The script reports both on a GPU |",
        ]
    )


def benchmark_model() -> str:
    """scripts/benchmark_model.py's JSON at the paper's size (fp32) and at the toy size (fp32 and bf16)."""
    precisions = {"fp32": "fp32", "bf16": "bf16 autocast"}
    lines = [
        "| input | precision | memory format | forward | forward + backward | peak RSS |",
        "|---|---|---|---|---|---|",
    ]
    idle = []
    for name in ("paper_size", "small"):
        result = json.loads((RESULTS / "benchmark_model" / f"{name}.json").read_text())
        size = f"{result['height']} x {result['width']}" + (" (paper)" if name == "paper_size" else "")
        for row in result["results"]:
            if row["precision"] == "idle":
                idle.append(row["peak_memory_mb"])
                continue
            layout = "channels_last" if row["channels_last"] else "contiguous"
            lines.append(
                f"| {size} | {precisions[row['precision']]} | {layout} | {row['forward_s']:.2f} s | "
                f"{row['forward_backward_s']:.2f} s | {row['peak_memory_mb'] / 1000:.1f} GB |"
            )
    lines += [
        "",
        f"(Peak RSS includes the torch libraries: a process holding only the model takes {max(idle) / 1000:.1f} GB.)",
    ]
    return "\n".join(lines)


def benchmark_flow() -> str:
    """scripts/benchmark_flow.py's JSON: seconds per frame pair of OpenCV DIS on one core."""
    result = json.loads((RESULTS / "benchmark_flow" / "flow_dis.json").read_text())
    sizes = ", ".join(
        f"{r['s_per_pair']:.2f} s per {r['width']}x{r['height']} pair" for r in result["results"]
    )
    return f"On this project's CPU, one core takes {sizes} (`{result['preset']}` preset), plus reading the frames."


def ci_run() -> str:
    """The CI run on a fresh clone (results/ci_run/ci_run.json, from the timed `.ci/run`)."""
    result = json.loads((RESULTS / "ci_run" / "ci_run.json").read_text())
    return (
        f"CI (`.ci/run`) installs from scratch and runs `make test`; on a {result['cores']}-core machine like CI's "
        f"that took {_minutes(result['total_s'])} in all ({_minutes(result['install_s'])} of installation "
        f"{result['install']}, {_minutes(result['tests_s'])} of tests: {result['passed'] + result['skipped']} tests on "
        f"2 workers, {result['skipped']} skipped without a GPU; raw output in `results/ci_run/`)."
    )


TABLES = {
    "toy_methods": toy_methods,
    "toy_mic": toy_mic,
    "default_job": default_job,
    "benchmark_train": benchmark_train,
    "benchmark_targets": benchmark_targets,
    "benchmark_model": benchmark_model,
    "benchmark_flow": benchmark_flow,
    "ci_run": ci_run,
}


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
