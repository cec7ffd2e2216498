"""Forward and forward+backward time and peak memory of a backbone at the paper's input size.

    python scripts/benchmark_model.py                              # backbone=accel, 1 clip of 2 frames, 512x1024
    python scripts/benchmark_model.py --device cuda --steps 10
    python scripts/benchmark_model.py backbone=accel backbone.depth=18 --height 256 --width 512

Every combination of precision (fp32, bf16 autocast) and memory format (contiguous, channels_last) runs in a
fresh process, so the peak memory of one does not leak into the next: on CUDA the peak allocated memory, on
CPU the peak resident set size of that process (the torch libraries included; the row "idle" measures what a
process holding the model alone takes). Times are medians over ``--steps`` after ``--warmup`` steps. Prints
a table and writes JSON (default outputs/benchmarks/model_<backbone>_<device>.json).
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
from hydra.utils import instantiate
from rich.console import Console
from rich.table import Table

from dastc.bench import device_name, peak_memory_mb, synchronize
from dastc.config import compose_config


def _measure(job: dict) -> dict:
    """Runs in a child process: build the model, time forward and forward+backward, report peak memory."""
    device, precision, channels_last = job["device"], job["precision"], job["channels_last"]
    torch.manual_seed(0)
    cfg = compose_config("train", job["overrides"])
    cfg.backbone.num_classes = job["classes"]
    model = instantiate(cfg.backbone).to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    b, t, h, w = job["batch"], job["frames"], job["height"], job["width"]
    frames = torch.rand(b, t, 3, h, w, device=device)
    flow = torch.randn(b, t - 1, 2, h, w, device=device)
    labels = torch.randint(0, job["classes"], (b, h, w), device=device)
    result = {"precision": precision, "channels_last": channels_last}
    if precision == "idle":
        result["peak_memory_mb"] = peak_memory_mb(device)
        return result
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16")

    def forward():
        with torch.no_grad(), autocast:
            model(frames, flow)

    def forward_backward():
        with autocast:
            out = model(frames, flow)
            logits = F.interpolate(out.logits, size=(h, w), mode="bilinear", align_corners=False)
            loss = F.cross_entropy(logits.float(), labels)
            if out.aux_logits is not None:
                aux = F.interpolate(out.aux_logits, size=(h, w), mode="bilinear", align_corners=False)
                loss = loss + 0.1 * F.cross_entropy(aux.float(), labels)
        loss.backward()
        model.zero_grad(set_to_none=True)

    for name, fn, train_mode in (
        ("forward_s", forward, False),
        ("forward_backward_s", forward_backward, True),
    ):
        model.train(train_mode)
        times = []
        for step in range(job["warmup"] + job["steps"]):
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            if step >= job["warmup"]:
                times.append(time.perf_counter() - start)
        result[name] = statistics.median(times)
    result["peak_memory_mb"] = peak_memory_mb(device)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=1, help="clips per step (the paper: 1)")
    parser.add_argument("--frames", type=int, default=2, help="frames per clip (current + previous)")
    parser.add_argument("--height", type=int, default=512, help="the paper's target input: 512 x 1024")
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--classes", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--precisions", default="fp32,bf16", help="comma-separated: fp32, bf16 (autocast)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("overrides", nargs="*", default=[], help="Hydra overrides (default: backbone=accel)")
    args = parser.parse_args()
    overrides = args.overrides or ["backbone=accel"]
    backbone = next((o.split("=", 1)[1] for o in overrides if o.startswith("backbone=")), "accel")

    base = {
        k: getattr(args, k)
        for k in ("device", "batch", "frames", "height", "width", "classes", "warmup", "steps")
    }
    jobs = [{**base, "overrides": overrides, "precision": "idle", "channels_last": False}]
    jobs += [
        {**base, "overrides": overrides, "precision": p, "channels_last": cl}
        for p in args.precisions.split(",")
        for cl in (False, True)
    ]
    context = mp.get_context("spawn")
    results = []
    for job in jobs:
        with context.Pool(1) as pool:  # a fresh process per configuration: clean peak memory
            results.append(pool.apply(_measure, (job,)))

    machine = device_name(args.device)
    table = Table(
        title=f"{' '.join(overrides)}: batch {args.batch} x {args.frames} frames at "
        f"{args.height}x{args.width}, {machine}"
    )
    for column in ("precision", "channels_last", "forward (s)", "forward+backward (s)", "peak memory (MB)"):
        table.add_column(column, justify="right")
    for r in results:
        fwd, fb = r.get("forward_s"), r.get("forward_backward_s")
        table.add_row(
            r["precision"],
            str(r["channels_last"]),
            "" if fwd is None else f"{fwd:.3f}",
            "" if fb is None else f"{fb:.3f}",
            f"{r['peak_memory_mb']:.0f}",
        )
    Console().print(table)
    out = args.out or Path("outputs/benchmarks") / f"model_{backbone}_{args.device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "overrides": overrides,
                "device": machine,
                "torch": torch.__version__,
                **{k: v for k, v in base.items() if k != "device"},
                "results": results,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
