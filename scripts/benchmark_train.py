"""Training-step speed of source-only and DA-STC at the paper's settings, and the data loader's throughput.

    python scripts/benchmark_train.py                                      # CPU: synthia sizes x 0.25, ResNet-18
    python scripts/benchmark_train.py --device cuda --precision bf16-mixed --scale 1 --channels-last
    python scripts/benchmark_train.py --dataset viper --methods dastc backbone.depth=50

For each method (``--methods``) a fresh process builds the method exactly as ``python -m dastc.train`` does
(``dataset=<--dataset> backbone=accel method=<m>`` plus any Hydra overrides given), with every DA-STC component
on from the first step (no warm-up, feature-level fusion from step 0), and times full training steps on
synthetic clips of the benchmark's shapes: source clips of ``--source-size``, target clips of
``--target-size`` (both scaled by ``--scale``), ``dataset.batch_size`` clips each, rare-class clips for
DA-STC's pasting. A step is what Lightning runs: every loss, backward, SGD step, EMA teacher update.

Reported per method: median step time after ``--warmup`` steps, clips per second, peak memory (CUDA: peak
allocated; CPU: peak resident set size of the process), model FLOPs per step (torch's FLOP counter over one
step: every forward and backward, the teacher's passes included) and MFU = FLOPs per step / step time / the
device's peak (a data-sheet table for known GPUs, or ``--peak-tflops``). The loader row times the benchmark's
real training DataLoader (default workers, rare-class clips and histogram matching as DA-STC asks) when its
data is under ``paths.data_dir``; the toy benchmark is always there (``--loader-dataset toy``).

Targets (issue 8): loader clips/s >= 2x the DA-STC step rate; DA-STC step <= 3x source-only; on an H100 in
bf16, DA-STC >= 35% MFU and peak memory <= 40 GB. Prints a table; writes JSON (default
outputs/benchmarks/train_<dataset>_<device>.json).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from lightning.fabric.utilities.apply_func import move_data_to_device
from rich.console import Console
from rich.table import Table
from torch.utils.flop_counter import FlopCounterMode

from dastc.bench import device_name, peak_memory_mb, peak_tflops, synchronize
from dastc.build import apply_speed_options, build_datamodule, build_method, rare_classes_needed
from dastc.cli import find_user_error
from dastc.config import compose_config
from dastc.methods.optim import make_optimizer

# The paper's input sizes per benchmark (docs/method.md, Optimisation): source clip, target clip.
SIZES = {
    "synthia": (
        (640, 1280),
        (512, 1024),
    ),  # SYNTHIA-Seq 1280x760 less the 120-row crop; Cityscapes at 1024x512
    "viper": ((720, 1280), (512, 1024)),
    "toy": ((64, 128), (64, 128)),
}


def _labels(batch: int, frames: int, size: tuple[int, int], classes: int, generator) -> torch.Tensor:
    """Blocky random labels (16x16-pixel cells): class regions, not per-pixel noise, for the class masks."""
    h, w = size
    cells = torch.randint(0, classes, (batch, frames, (h + 15) // 16, (w + 15) // 16), generator=generator)
    return F.interpolate(cells.float(), size=(h, w), mode="nearest").long()


def _clip(batch, frames, size, classes, generator, labelled=True) -> dict:
    clip = {
        "frames": torch.rand(batch, frames, 3, *size, generator=generator),
        "flow": torch.randn(batch, frames - 1, 2, *size, generator=generator),
        "meta": [{} for _ in range(batch)],
    }
    if labelled:
        clip["labels"] = _labels(batch, frames, size, classes, generator)
    return clip


def synthetic_batch(cfg, source_size, target_size, classes: int) -> dict:
    """A training batch of the benchmark's shapes: source (t-1, t) with labels, target (t-2, t-1, t) without,
    and the rare-class clips DA-STC pastes."""
    g = torch.Generator().manual_seed(0)
    b = cfg.dataset.batch_size
    batch = {
        "source": _clip(b, 2, source_size, classes, g),  # every benchmark's source samples are (t-1, t)
        "target": _clip(b, 3, target_size, classes, g, labelled=False),
    }
    rare = rare_classes_needed(cfg)
    if rare:
        batch["rare"] = {
            "classes": torch.randint(0, classes, (b, rare), generator=g),
            "clips": [_clip(b, 2, source_size, classes, g) for _ in range(rare)],
        }
    return batch


class _GlobalOnly:
    """Stands in for FlopCounterMode's per-module tracker, which fails on tensors that need a gradient but were
    made without one in the method's step ("Expected gradient function to be set"); the total is unchanged."""

    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *args):
        return None


def _measure_step(job: dict) -> dict:
    """In a fresh process: build the method, time training steps, count their FLOPs, read peak memory."""
    device, precision = job["device"], job["precision"]
    torch.manual_seed(0)
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
    cfg = compose_config("train", job["overrides"])
    method = build_method(cfg, build_datamodule(cfg, training=False)).to(device)
    apply_speed_options(method, cfg.model)
    method.train()
    method.teacher.model.eval()
    optimizer = make_optimizer(method.student, method.optim)
    batch = move_data_to_device(
        synthetic_batch(cfg, job["source_size"], job["target_size"], cfg.dataset.num_classes), device
    )
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=precision.startswith("bf16"))

    def step():
        with autocast:
            losses = method.training_losses(batch)
        total = torch.stack([v.float() for v in losses.values()]).sum()
        total.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        method.teacher.update(method.student)
        return sorted(losses)

    times = []
    for k in range(job["warmup"] + job["steps"]):
        synchronize(device)
        start = time.perf_counter()
        terms = step()
        synchronize(device)
        if k >= job["warmup"]:
            times.append(time.perf_counter() - start)
    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _GlobalOnly()  # totals only; see _GlobalOnly
    with counter:
        step()
    median = statistics.median(times)
    flops = counter.get_total_flops()
    peak = job["peak_tflops"]
    return {
        "method": job["method"],
        "loss_terms": terms,
        "step_s": median,
        "step_s_all": times,
        "clips_per_s": cfg.dataset.batch_size / median,
        "peak_memory_mb": peak_memory_mb(device),
        "gflops_per_step": flops / 1e9,
        "mfu": flops / median / (peak * 1e12) if peak else None,
    }


def _measure_loader(job: dict) -> dict:
    """In a fresh process: clips per second of the benchmark's training DataLoader at its default settings."""
    cfg = compose_config("train", job["overrides"])
    datamodule = build_datamodule(cfg)
    try:
        datamodule.prepare_data()
        datamodule.setup("fit")
    except Exception as err:  # Hydra wraps a missing dataset's error: report that sentence
        cause = find_user_error(err)
        if cause is None:
            raise
        return {"dataset": cfg.dataset.name, "error": str(cause)}
    loader = iter(datamodule.train_dataloader())
    start = time.perf_counter()
    next(loader)  # worker start-up and the first batch
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(job["batches"]):
        next(loader)
    elapsed = time.perf_counter() - start
    return {
        "dataset": cfg.dataset.name,
        "num_workers": cfg.dataset.num_workers,
        "batch_size": cfg.dataset.batch_size,
        "first_batch_s": first,
        "clips_per_s": job["batches"] * cfg.dataset.batch_size / elapsed,
    }


def _scaled(size: tuple[int, int], scale: float) -> tuple[int, int]:
    return tuple(max(16, round(s * scale / 8) * 8) for s in size)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dataset", default="synthia", choices=sorted(SIZES))
    parser.add_argument("--methods", default="source_only,dastc", help="comma-separated method configs")
    parser.add_argument("--precision", default=None, help="32-true | bf16-mixed (default: bf16 on CUDA)")
    parser.add_argument(
        "--scale", type=float, default=None, help="size factor (default: 1 on CUDA, 0.25 on CPU)"
    )
    parser.add_argument("--source-size", type=int, nargs=2, default=None, metavar=("H", "W"))
    parser.add_argument("--target-size", type=int, nargs=2, default=None, metavar=("H", "W"))
    parser.add_argument("--channels-last", action="store_true", help="model.channels_last=true")
    parser.add_argument("--compile", action="store_true", help="model.compile=true (inductor)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's peak, for the MFU")
    parser.add_argument(
        "--loader-dataset", default=None, help="benchmark whose loader is timed (default: --dataset)"
    )
    parser.add_argument("--loader-batches", type=int, default=20)
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "overrides", nargs="*", default=[], help="Hydra overrides (default on CPU: backbone.depth=18)"
    )
    args = parser.parse_args()
    cuda = args.device == "cuda"
    precision = args.precision or ("bf16-mixed" if cuda else "32-true")
    scale = args.scale if args.scale is not None else (1.0 if cuda else 0.25)
    source_size = tuple(args.source_size or _scaled(SIZES[args.dataset][0], scale))
    target_size = tuple(args.target_size or _scaled(SIZES[args.dataset][1], scale))
    overrides = args.overrides or ([] if cuda else ["backbone.depth=18"])
    common = [
        f"dataset={args.dataset}",
        "backbone=accel",
        f"paths.data_dir={args.data_dir}",
        "dataset.schedule.warmup_steps=0",
        "dataset.schedule.feature_fusion_start=0",
        f"model.channels_last={str(args.channels_last).lower()}",
        f"model.compile={str(args.compile).lower()}",
    ]
    peak = args.peak_tflops or peak_tflops(args.device, precision)
    context = mp.get_context("spawn")
    steps = []
    for method in args.methods.split(","):
        job = {
            "method": method,
            "device": args.device,
            "precision": precision,
            "overrides": [*common, f"method={method}", *overrides],
            "source_size": source_size,
            "target_size": target_size,
            "warmup": args.warmup,
            "steps": args.steps,
            "peak_tflops": peak,
        }
        with context.Pool(1) as pool:  # a fresh process per method: its own peak memory
            steps.append(pool.apply(_measure_step, (job,)))
    loader_dataset = args.loader_dataset or args.dataset
    loader_job = {
        "overrides": [f"dataset={loader_dataset}", f"paths.data_dir={args.data_dir}", "method=dastc"],
        "batches": args.loader_batches,
    }
    with context.Pool(1) as pool:
        loader = pool.apply(_measure_loader, (loader_job,))

    machine = device_name(args.device)
    by_method = {s["method"]: s for s in steps}
    ratio = (
        by_method["dastc"]["step_s"] / by_method["source_only"]["step_s"]
        if {"dastc", "source_only"} <= by_method.keys()
        else None
    )
    slowest = min(s["clips_per_s"] for s in steps)
    loader_margin = loader["clips_per_s"] / slowest if "clips_per_s" in loader else None
    table = Table(
        title=f"{args.dataset}, backbone=accel {' '.join(overrides)}, {precision}, source {source_size[0]}x"
        f"{source_size[1]}, target {target_size[0]}x{target_size[1]}, {machine}"
    )
    for column in ("", "step (s)", "clips/s", "peak memory (MB)", "GFLOP/step", "MFU"):
        table.add_column(column, justify="right")
    for s in steps:
        mfu = "n/a" if s["mfu"] is None else f"{100 * s['mfu']:.1f}%"
        table.add_row(
            s["method"],
            f"{s['step_s']:.3f}",
            f"{s['clips_per_s']:.2f}",
            f"{s['peak_memory_mb']:.0f}",
            f"{s['gflops_per_step']:.0f}",
            mfu,
        )
    if "clips_per_s" in loader:
        table.add_row(
            f"loader ({loader['dataset']}, {loader['num_workers']} workers)",
            "",
            f"{loader['clips_per_s']:.2f}",
        )
    console = Console()
    console.print(table)
    if ratio is not None:
        console.print(f"DA-STC step / source-only step: {ratio:.2f}x (target <= 3x)")
    if loader_margin is not None:
        console.print(f"loader clips/s / slowest step's clips/s: {loader_margin:.1f}x (target >= 2x)")
    else:
        console.print(f"loader not timed: {loader['error']}", highlight=False)
    out = args.out or Path("outputs/benchmarks") / f"train_{args.dataset}_{args.device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = {
        "device": machine,
        "torch": torch.__version__,
        "dataset": args.dataset,
        "precision": precision,
        "overrides": overrides,
        "source_size": source_size,
        "target_size": target_size,
        "channels_last": args.channels_last,
        "compile": args.compile,
        "peak_tflops": peak,
        "steps": steps,
        "loader": loader,
        "dastc_over_source_only": ratio,
        "loader_over_step_rate": loader_margin,
    }
    out.write_text(json.dumps(summary, indent=2))
    console.print(f"wrote {out}", highlight=False)


if __name__ == "__main__":
    main()
