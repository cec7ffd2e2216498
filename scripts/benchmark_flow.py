"""Seconds per frame pair of the default flow estimator (OpenCV DIS, one core) at the benchmarks' frame sizes.

    python scripts/benchmark_flow.py                                   # 1024x512 (Cityscapes-Seq), 1280x760
                                                                       # (SYNTHIA-Seq), 1280x720 (VIPER)
    python scripts/benchmark_flow.py --sizes 2048x1024 --preset fast --out flow.json

Each pair is a textured toy-benchmark frame at that size and the same frame shifted by a few pixels with a
moving object, so the estimator has real motion to find; times are medians over ``--pairs`` pairs after one
warm-up, on one thread (``python -m dastc.flow.estimate`` runs one process per core). Reading the frames from
disk is not included. Prints a table and writes JSON (default outputs/benchmarks/flow_dis.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from dastc.flow.estimators import DISFlow


def frame_pair(width: int, height: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random texture (previous) and the same texture shifted 3 px right with a square moved 6 px
    down (current), RGB uint8."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
    texture = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    texture = cv2.add(texture, rng.integers(0, 24, texture.shape, dtype=np.uint8))
    previous = texture
    current = np.roll(texture, 3, axis=1).copy()
    box = slice(height // 3, height // 3 + height // 6), slice(width // 3, width // 3 + width // 8)
    square = previous[box].copy()
    current[box[0].start + 6 : box[0].stop + 6, box[1]] = square
    return current, previous


def measure(width: int, height: int, preset: str, pairs: int) -> dict:
    estimator = DISFlow(preset)
    frames = [frame_pair(width, height, seed) for seed in range(pairs + 1)]
    estimator(*frames[0])  # warm-up
    times = []
    for current, previous in frames[1:]:
        start = time.perf_counter()
        estimator(current, previous)
        times.append(time.perf_counter() - start)
    return {"width": width, "height": height, "s_per_pair": statistics.median(times), "s_all": times}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1024x512,1280x760,1280x720", help="comma-separated WIDTHxHEIGHT")
    parser.add_argument("--preset", default="medium", choices=["ultrafast", "fast", "medium"])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmarks/flow_dis.json"))
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)  # one core, as each worker of dastc.flow.estimate runs
    sizes = [tuple(int(v) for v in size.split("x")) for size in args.sizes.split(",")]
    results = [measure(w, h, args.preset, args.pairs) for w, h in sizes]
    table = Table(title=f"OpenCV DIS ({args.preset}), one thread of a {platform.machine()} CPU")
    for column in ("frame size", "s per pair"):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(f"{r['width']}x{r['height']}", f"{r['s_per_pair']:.3f}")
    Console().print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "machine": platform.machine(),
        "opencv": cv2.__version__,
        "estimator": "dis",
        "preset": args.preset,
        "threads": 1,
        "pairs": args.pairs,
        "results": results,
    }
    args.out.write_text(json.dumps(payload, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
