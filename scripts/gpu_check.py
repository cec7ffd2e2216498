"""A few real training steps of every method on a GPU, at the paper's sizes, in fp32 and bf16.

    make gpu-check                                   # = python scripts/gpu_check.py (CUDA, paper sizes)
    python scripts/gpu_check.py --out gpu_check.json --keep
    python scripts/gpu_check.py --device cpu         # the dry run: tiny sizes, ResNet-18, fp32

What it does, through the real entry points (``python -m dastc.train`` and ``python -m dastc.predict``, one
process each, so every run has its own peak memory and a crash stops only that run):

1. writes a small SYNTHIA-Seq -> Cityscapes-Seq benchmark into a temporary data dir, in each dataset's own
   encoding, at the paper's sizes: 1280x760 SYNTHIA frames (1280x640 after the 120-row crop), 2048x1024
   Cityscapes frames read at 1024x512, 2048x1024 validation labels, a uniform flow for every clip;
2. for each precision (``--precisions``: fp32 = ``32-true``, ``bf16-mixed``) trains ``--steps`` steps of
   ``method=source_only`` (``dataset=synthia backbone=accel``, ResNet-101), then the paper's two stages as
   users run them: ``experiment=synthia2city_tps`` (random init instead of ImageNet weights) and
   ``experiment=synthia2city_dastc model.init_from=<that TPS run>``, with shallow-feature fusion from step 0,
   then the beyond-the-paper preset ``experiment=synthia2city_dastc_hrda_mic`` (MiT-B5 DA-STC with HRDA, MIC,
   rare class sampling and the ImageNet feature distance; random weights; MiT-B0 in the CPU dry run);
   each run ends, as every training run does, with one validation of its final checkpoint at the full
   protocol (1024x512 input scored against the 2048x1024 labels);
3. segments a few Cityscapes frames with ``python -m dastc.predict`` on the last DA-STC run.

A callback added to each run (``+callbacks.gpu_check_probe``) times every step (synchronising the GPU),
reads the peak GPU memory of training and of validation and checks that every logged ``train/*`` loss term
is finite and no step was skipped. Printed: a markdown table (median step time after the first step, peak GPU
memory, losses finite, target val mIoU); ``--out`` also writes it as JSON. The exit status is 1 when a run
fails, a loss is not finite, or (CUDA) the whole check takes longer than ``--time-limit`` seconds (8 min).

Extra Hydra overrides go to every training run (``python scripts/gpu_check.py model.channels_last=true``).
A temporary work dir is removed at the end unless ``--keep`` is given or something failed (its logs under
``logs/`` say what); each precision's checkpoints are dropped once its runs are done (about 0.75 GB a run).

On CPU (``--device cpu``) the same runs use tiny sizes (48x96 source, 32x64 target, 64x128 labels) and
``backbone.depth=18``, in fp32 only by default: a CPU without bf16 arithmetic emulates it, and the dry run's
test keeps under a minute (``--precisions 32-true,bf16-mixed`` adds bf16; a slow test runs it). The memory
column is then the process's peak resident set size, libraries included.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import lightning as L
import numpy as np
import torch

from dastc.bench import device_name, peak_memory_mb, synchronize
from dastc.data.cityscapes_seq import CityscapesSeq
from dastc.data.synthia_seq import LAYOUTS, SynthiaSeq
from dastc.flow.io import write_flow_png

REPO = Path(__file__).resolve().parent.parent
# In this order: DA-STC starts from the TPS run. dastc_hrda_mic: the beyond-the-paper preset (MiT-B5 DA-STC with
# HRDA, MIC, rare class sampling and the ImageNet feature distance), from random weights.
METHODS = ("source_only", "tps", "dastc", "dastc_hrda_mic")
PRECISION_NAMES = {"32-true": "fp32", "bf16-mixed": "bf16"}
PROBE_FILE = "gpu_check_probe.json"
# Loss terms that must be logged at every step: DA-STC's feature-level fusion is on from step 0 here.
REQUIRED_TERMS = {
    "dastc": ("feat_s2t_ce", "feat_t2s_ce"),
    "dastc_hrda_mic": ("feat_s2t_ce", "feat_t2s_ce", "target_mic", "source_fdist"),
}


# ----------------------------------------------------------------------------------------------- fixture data
@dataclass(frozen=True)
class Sizes:
    source: tuple[int, int]  # SYNTHIA-Seq input (H, W), after the bottom crop
    crop: int  # rows cut from the bottom of SYNTHIA-Seq frame files
    target: tuple[int, int]  # Cityscapes-Seq input: frame files are resized to it
    files: tuple[int, int]  # Cityscapes-Seq frame and label files (validation labels are scored at this size)


# The paper's sizes, which conf/dataset/synthia.yaml reads by default (docs/method.md, Optimisation;
# docs/benchmarks.md, Evaluation protocol).
PAPER = Sizes(source=(640, 1280), crop=120, target=(512, 1024), files=(1024, 2048))
# The dry run: source larger than target as in the paper, so DA-STC's cropping to the target size runs too.
TINY = Sizes(source=(48, 96), crop=8, target=(32, 64), files=(64, 128))

# Every class of the 12-class space in every label, long-tail ones included (rare-class pasting finds them):
# road, sidewalk, building, fence, pole, light, sign, vegetation, sky, person, rider, car.
SYNTHIA_IDS = (3, 4, 2, 5, 7, 15, 9, 6, 1, 10, 11, 8)  # raw SYNTHIA class ids
CITYSCAPES_IDS = (7, 8, 11, 13, 17, 19, 20, 21, 23, 24, 25, 26)  # Cityscapes label ids
SYNTHIA_FRAMES = range(5)  # frames 0..4, labelled: clips t = 1..4
CITYSCAPES_TRAIN = {("aachen", "000000"): range(17, 20), ("bochum", "000000"): range(17, 20)}
CITYSCAPES_VAL = {("frankfurt", "000000"): range(17, 20), ("lindau", "000001"): range(18, 20)}
PREDICT_INPUT = ("val", "frankfurt")  # the frames python -m dastc.predict segments


def block_ids(shape: tuple[int, int], ids: tuple[int, ...], shift: int) -> np.ndarray:
    """A 4 x 8 grid of class blocks cycling through ``ids``, moved ``shift`` blocks sideways (frames move)."""
    h, w = shape
    rows = np.arange(h) * 4 // h
    cols = (np.arange(w) * 8 // w + shift) % 8
    return np.asarray(ids)[(rows[:, None] * 8 + cols[None, :]) % len(ids)]


def colour_frame(ids: np.ndarray, seed: int, t: int) -> np.ndarray:
    """A BGR frame with one colour per class (a palette per domain) and a brightness that changes over time."""
    palette = np.random.default_rng(seed).integers(30, 200, (256, 3))
    return np.clip(palette[ids] + 2 * t, 0, 255).astype(np.uint8)


def write_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"could not write {path}")


def write_synthia(root: Path, sizes: Sizes) -> None:
    """SYNTHIA-SEQS-04-DAWN in its archive layout: 8-bit frames, 16-bit labels with the class id in R."""
    frames_dir, labels_dir = (root / d for d in LAYOUTS["original"])
    shape = (sizes.source[0] + sizes.crop, sizes.source[1])
    for t in SYNTHIA_FRAMES:
        ids = block_ids(shape, SYNTHIA_IDS, t)
        write_png(frames_dir / f"{t:06d}.png", colour_frame(ids, 0, t))
        label = np.zeros((*shape, 3), np.uint16)
        label[..., 2] = ids  # OpenCV writes BGR: channel 2 is the file's R
        write_png(labels_dir / f"{t:06d}.png", label)


def write_cityscapes(root: Path, sizes: Sizes) -> None:
    """Cityscapes-Seq snippets (train and val), each with a gtFine labelIds file on its last frame."""
    for split, snippets in (("train", CITYSCAPES_TRAIN), ("val", CITYSCAPES_VAL)):
        for (city, seq), frames in snippets.items():
            for t in frames:
                ids = block_ids(sizes.files, CITYSCAPES_IDS, t)
                frame = root / "leftImg8bit_sequence" / split / city / f"{city}_{seq}_{t:06d}_leftImg8bit.png"
                write_png(frame, colour_frame(ids, 1, t))
            label = root / "gtFine" / split / city / f"{city}_{seq}_{frames[-1]:06d}_gtFine_labelIds.png"
            write_png(label, block_ids(sizes.files, CITYSCAPES_IDS, frames[-1]).astype(np.uint8))


def write_flows(data_dir: Path, sizes: Sizes) -> int:
    """A uniform flow (dastc's flow PNG) for every clip, at its frame file's size, where the readers look."""
    flow_dir = data_dir / "flow"
    synthia = SynthiaSeq(
        data_dir / "SYNTHIA-SEQS-04-DAWN",
        flow_dir=flow_dir / "synthia_seq",
        require_flow=False,
        crop_bottom=sizes.crop,
    )
    readers = [(synthia, (sizes.source[0] + sizes.crop, sizes.source[1]))]
    for split in ("train", "val"):
        kwargs = {"flow_dir": flow_dir / "cityscapes_seq", "size": sizes.target, "require_flow": False}
        readers.append((CityscapesSeq(data_dir / "Cityscapes", split, "synthia", **kwargs), sizes.files))
    count = 0
    for reader, (h, w) in readers:
        for _, _, output in reader.flow_pairs():
            output.parent.mkdir(parents=True, exist_ok=True)
            write_flow_png(output, np.broadcast_to(np.float32([1.5, -0.5]), (h, w, 2)))
            count += 1
    return count


def write_benchmark(data_dir: Path, sizes: Sizes) -> Path:
    write_synthia(data_dir / "SYNTHIA-SEQS-04-DAWN", sizes)
    write_cityscapes(data_dir / "Cityscapes", sizes)
    write_flows(data_dir, sizes)
    return data_dir


# --------------------------------------------------------------------------------------- the probe callback
class StepProbe(L.Callback):
    """Added to each training run: step times, logged loss terms, skipped steps and peak memory, written as
    JSON to ``out`` whenever fitting or validation ends (the parent process reads it)."""

    def __init__(self, out: str):
        self.out = Path(out)
        self.record: dict = {"steps": [], "train_peak_mb": None, "val_peak_mb": None}
        self._start = 0.0

    @staticmethod
    def _device(pl_module) -> str:
        return pl_module.device.type

    def _reset_peak(self, pl_module) -> None:
        if self._device(pl_module) == "cuda":
            torch.cuda.reset_peak_memory_stats()

    def on_train_start(self, trainer, pl_module) -> None:
        self._reset_peak(pl_module)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        synchronize(self._device(pl_module))
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        synchronize(self._device(pl_module))
        elapsed = time.perf_counter() - self._start
        # A step whose loss or gradient was not finite is skipped by the method (no train/* values logged, the
        # previous ones stay in callback_metrics): its bad-step counter says so.
        skipped = getattr(pl_module, "bad_steps", 0) > 0
        terms = {
            k.removeprefix("train/"): float(v)
            for k, v in trainer.callback_metrics.items()
            if k.startswith("train/") and k != "train/bad_clips_skipped"
        }
        self.record["steps"].append(
            {"time_s": elapsed, "skipped": skipped, "terms": {} if skipped else terms}
        )

    def on_train_end(self, trainer, pl_module) -> None:
        self.record["train_peak_mb"] = peak_memory_mb(self._device(pl_module))
        self._write()

    def on_validation_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._reset_peak(pl_module)

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.record["val_peak_mb"] = peak_memory_mb(self._device(pl_module))
            self._write()

    def _write(self) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(self.record, indent=2, allow_nan=True))


# --------------------------------------------------------------------------------------------------- the runs
@dataclass
class RunResult:
    method: str
    precision: str
    ok: bool = False
    error: str | None = None
    steps: int = 0
    first_step_s: float | None = None
    median_step_s: float | None = None
    train_peak_gib: float | None = None
    val_peak_gib: float | None = None
    losses_finite: bool = False
    loss_terms: dict | None = None
    val_miou: float | None = None
    wall_s: float = 0.0
    run_dir: str = ""
    log: str = ""


def method_overrides(method: str, init_from: Path | None) -> list[str]:
    """The groups as users pick them: plain groups for the baseline, the paper's presets for the two stages."""
    # Random weights: the check is about the GPU path, not accuracy, and the GPU machine has no network.
    if method == "source_only":
        return [
            "dataset=synthia",
            "backbone=accel",
            "method=source_only",
            "backbone.depth=101",
            "backbone.pretrained=null",
        ]
    if method == "tps":
        return ["experiment=synthia2city_tps", "backbone.pretrained=null"]
    if method == "dastc_hrda_mic":
        return ["experiment=synthia2city_dastc_hrda_mic", "backbone.pretrained=null"]
    return ["experiment=synthia2city_dastc", f"model.init_from={init_from}"]


def size_overrides(sizes: Sizes) -> list[str]:
    """Nothing at the paper's sizes (the configs' defaults); the readers' sizes otherwise."""
    if sizes == PAPER:
        return []
    h, w = sizes.target
    return [
        f"dataset.source.dataset.crop_bottom={sizes.crop}",
        f"dataset.target.dataset.size=[{h},{w}]",
        f"dataset.val.size=[{h},{w}]",
    ]


def device_overrides(method: str, device: str) -> list[str]:
    if device == "cuda":  # the presets choose trainer=gpu themselves
        return ["trainer=gpu"] if method == "source_only" else []
    return [
        "trainer.accelerator=cpu",
        "trainer.devices=1",
        "dataset.num_workers=0",
        "dataset.pin_memory=false",
    ]


def small_network_overrides(method: str, args) -> list[str]:
    """The CPU dry run's small networks (ResNet-18 DeepLab, MiT-B0) and a rare-class threshold its tiny frames
    meet; nothing on CUDA."""
    if args.device == "cuda":
        return []
    if method == "dastc_hrda_mic":
        return ["backbone.encoder_name=mit_b0", "dataset.rcs.min_pixels=1"]
    return ["backbone.depth=18"]  # the presets' 101 otherwise


def train_overrides(method, precision, args, data_dir: Path, run_dir: Path, init_from: Path | None):
    return [
        *method_overrides(method, init_from),
        *device_overrides(method, args.device),
        *size_overrides(args.sizes),
        f"paths.data_dir={data_dir}",
        f"paths.output_dir={run_dir}",
        f"trainer.max_steps={args.steps}",
        f"trainer.precision={precision}",
        "trainer.log_every_n_steps=1",
        "dataset.schedule.feature_fusion_start=0",
        "+callbacks.gpu_check_probe._target_=gpu_check.StepProbe",
        f"+callbacks.gpu_check_probe.out={run_dir / PROBE_FILE}",
        *small_network_overrides(method, args),
        *args.overrides,
    ]


def run_module(module: str, overrides: list[str], log: Path, timeout: float) -> tuple[int, float]:
    """``python -m <module> <overrides>`` with this folder importable (for the probe); output into ``log``.
    Returns the exit status (-1 on timeout) and the wall time."""
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(__file__).parent), env.get("PYTHONPATH")) if p)
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log.open("w") as out:
        out.write(f"$ python -m {module} {' '.join(overrides)}\n\n")
        out.flush()
        try:
            proc = subprocess.run(
                [sys.executable, "-m", module, *overrides],
                cwd=log.parent,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
            )
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = -1
    return code, time.perf_counter() - start


def failure_reason(log: Path, code: int) -> str:
    """The child's ``error:`` sentence, else the last exception line of its traceback, else the start of its
    last paragraph (Hydra's config errors)."""
    if code == -1:
        return "timed out"
    text = log.read_text(errors="replace")
    text = "\n".join(line for line in text.splitlines() if "HYDRA_FULL_ERROR" not in line)  # Hydra's hint
    lines = [line.strip() for line in text.splitlines()]
    errors = [line for line in lines if line.startswith("error:")]
    errors = errors or [line for line in lines if re.match(r"^[\w.]*(Error|Exception)\b.*:", line)]
    if not errors:
        paragraphs = [p.strip() for p in text.split("\n\n") if p.strip() and not p.startswith("$ python")]
        errors = [" ".join(paragraphs[-1].splitlines()[:2])] if paragraphs else ["no output"]
    return f"exit status {code}: {errors[-1][:300]}"


def finite_losses(method: str, steps: list[dict]) -> tuple[bool, str | None]:
    """Every step ran (none skipped), logged terms, all finite, and the terms this check switches on."""
    if not steps:
        return False, "no training step ran"
    for k, step in enumerate(steps):
        if step["skipped"]:
            return False, f"step {k} was skipped: a loss or gradient was not finite"
        bad = [name for name, value in step["terms"].items() if not math.isfinite(value)]
        if bad or not step["terms"]:
            return False, f"step {k}: loss terms {', '.join(bad) or '(none logged)'} not finite"
        missing = [t for t in REQUIRED_TERMS.get(method, ()) if t not in step["terms"]]
        if missing:
            return False, f"step {k}: {', '.join(missing)} not logged (a switched-on term did not run)"
    return True, None


def skip_warning(log: Path) -> str:
    """The method's own word on its first skipped step (which loss or gradient), when it skipped one."""
    for line in log.read_text(errors="replace").splitlines():
        if "skipping step" in line:
            return " (" + line.split("skipping ", 1)[1].strip() + ")"
    return ""


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def gib(mb: float | None) -> float | None:
    return None if mb is None else mb / 1024


def summarise(result: RunResult, run_dir: Path, code: int, log: Path) -> RunResult:
    probe = read_json(run_dir / PROBE_FILE) or {"steps": []}
    steps = probe["steps"]
    times = [s["time_s"] for s in steps]
    result.steps = len(steps)
    if times:
        result.first_step_s = times[0]
        result.median_step_s = statistics.median(times[1:] or times)  # the first step autotunes, allocates
    result.train_peak_gib = gib(probe.get("train_peak_mb"))
    result.val_peak_gib = gib(probe.get("val_peak_mb"))
    result.loss_terms = steps[-1]["terms"] if steps else None
    result.losses_finite, loss_error = finite_losses(result.method, steps)
    metrics = read_json(run_dir / "metrics.json")
    if metrics is not None:
        result.val_miou = metrics["metrics"]["target"]["mIoU"]
    if code != 0:
        result.error = failure_reason(log, code)
    elif loss_error:
        result.error = loss_error + skip_warning(log)
    elif metrics is None:
        result.error = "no metrics.json: the final validation did not run"
    result.ok = result.error is None
    return result


def train_run(method: str, precision: str, args, data_dir: Path, init_from: Path | None) -> RunResult:
    name = f"{PRECISION_NAMES.get(precision, precision)}_{method}"
    run_dir = args.work_dir / "runs" / name
    log = args.work_dir / "logs" / f"{name}.log"
    result = RunResult(method, precision, run_dir=str(run_dir), log=str(log))
    if method == "dastc" and init_from is None:
        result.error = "not run: its TPS stage failed"
        return result
    overrides = train_overrides(method, precision, args, data_dir, run_dir, init_from)
    code, result.wall_s = run_module("dastc.train", overrides, log, args.run_timeout)
    return summarise(result, run_dir, code, log)


def predict_run(run_dir: Path, args, data_dir: Path) -> dict:
    """``python -m dastc.predict`` on a trained run: a few validation frames at the target input size."""
    split, city = PREDICT_INPUT
    frames = data_dir / "Cityscapes" / "leftImg8bit_sequence" / split / city
    out = args.work_dir / "predict"
    log = args.work_dir / "logs" / "predict.log"
    h, w = args.sizes.target
    overrides = [f"ckpt_path={run_dir}", f"input={frames}", f"size=[{h},{w}]", f"paths.output_dir={out}"]
    overrides += [f"device={args.device}"]
    code, wall = run_module("dastc.predict", overrides, log, args.run_timeout)
    summary = read_json(out / "consistency.json")
    error = failure_reason(log, code) if code != 0 else None if summary else "no consistency.json written"
    return {"ok": error is None, "error": error, "wall_s": wall, "summary": summary, "log": str(log)}


def free_checkpoints(run_dir: str) -> None:
    """A full-size run's checkpoints are large (student, teacher, optimiser): drop them once unneeded."""
    shutil.rmtree(Path(run_dir) / "checkpoints", ignore_errors=True)


def run_all(args, data_dir: Path) -> tuple[list[RunResult], dict | None]:
    results, predict = [], None
    for precision in args.precisions:
        tps_dir, done = None, []
        for method in args.methods:
            result = train_run(method, precision, args, data_dir, tps_dir)
            print(one_line(result), flush=True)
            done.append(result)
            if method == "tps" and result.ok:
                tps_dir = Path(result.run_dir)
        trained = [r for r in done if r.ok]
        if (
            args.predict and precision == args.precisions[-1] and trained
        ):  # the last run of the last precision
            predict = predict_run(Path(trained[-1].run_dir), args, data_dir)
            state = "ok" if predict["ok"] else f"FAILED: {predict['error']}"
            print(
                f"predict ({trained[-1].method}, {precision}): {state} ({predict['wall_s']:.0f} s)",
                flush=True,
            )
        if not args.keep:
            for result in done:
                free_checkpoints(result.run_dir)
        results += done
    return results, predict


# ------------------------------------------------------------------------------------------------- reporting
def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def one_line(r: RunResult) -> str:
    state = "ok" if r.ok else f"FAILED: {r.error}"
    return f"{r.method} {r.precision}: {state} ({r.wall_s:.0f} s, {r.steps} steps)"


def table(results: list[RunResult], device: str) -> str:
    memory = "peak GPU GiB (train / val)" if device == "cuda" else "peak RSS GiB (train / val)"
    rows = [
        f"| method | precision | median step s | first step s | {memory} | losses finite | val mIoU | run s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        peak = f"{_num(r.train_peak_gib, '.2f')} / {_num(r.val_peak_gib, '.2f')}"
        finite = "yes" if r.losses_finite else "**no**"
        rows.append(
            f"| {r.method} | {r.precision} | {_num(r.median_step_s, '.3f')} | {_num(r.first_step_s, '.3f')} "
            f"| {peak} | {finite} | {_num(r.val_miou, '.2f')} | {r.wall_s:.0f} |"
        )
    return "\n".join(rows)


def failures(results: list[RunResult], predict: dict | None, wall: float, limit: float | None) -> list[str]:
    found = [f"{r.method} {r.precision}: {r.error} (log: {r.log})" for r in results if not r.ok]
    if predict is not None and not predict["ok"]:
        found.append(f"predict: {predict['error']} (log: {predict['log']})")
    if limit is not None and wall > limit:
        found.append(f"the check took {wall:.0f} s, over its {limit:.0f} s limit")
    return found


# ---------------------------------------------------------------------------------------------- command line
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument(
        "--steps", type=int, default=None, help="training steps per run (default: CUDA 4, CPU 2)"
    )
    parser.add_argument(
        "--precisions", default=None, help="comma-separated (default: CUDA 32-true,bf16-mixed; CPU 32-true)"
    )
    parser.add_argument(
        "--methods", default=",".join(METHODS), help="comma-separated, from " + ", ".join(METHODS)
    )
    parser.add_argument(
        "--no-predict", dest="predict", action="store_false", help="skip python -m dastc.predict"
    )
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="data, runs and logs (default: a temp dir)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work dir and the runs' checkpoints")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    parser.add_argument(
        "--time-limit", type=float, default=None, help="seconds (default: CUDA 480, CPU none)"
    )
    parser.add_argument("--run-timeout", type=float, default=480, help="seconds one run may take")
    parser.add_argument(
        "overrides", nargs="*", default=[], help="Hydra overrides added to every training run"
    )
    args = parser.parse_args(argv)
    cuda = args.device == "cuda"
    args.steps = args.steps or (4 if cuda else 2)
    args.precisions = (args.precisions or ("32-true,bf16-mixed" if cuda else "32-true")).split(",")
    args.methods = [m for m in METHODS if m in args.methods.split(",")]  # DA-STC after its TPS stage
    if "dastc" in args.methods and "tps" not in args.methods:
        parser.error("--methods: dastc starts from the tps run, so it needs tps too")
    args.sizes = PAPER if cuda else TINY
    args.time_limit = args.time_limit if args.time_limit is not None else (480.0 if cuda else None)
    return args


def print_report(
    args, results: list[RunResult], predict: dict | None, wall: float, problems: list[str]
) -> None:
    print(f"\n{device_name(args.device)}, torch {torch.__version__}, {args.steps} steps per run\n")
    print(table(results, args.device))
    if predict is not None and predict["summary"]:
        summary = predict["summary"]
        print(f"\npredict: {summary['frames']} frames in {predict['wall_s']:.0f} s, "
              f"temporal consistency {_num(summary['temporal_consistency'], '.3f')}")  # fmt: skip
    print(f"\ntotal {wall:.0f} s" + (f" (limit {args.time_limit:.0f} s)" if args.time_limit else ""))
    for problem in problems:
        print(f"FAILED: {problem}")


def write_json(
    path: Path, args, results: list[RunResult], predict: dict | None, wall: float, problems
) -> None:
    payload = {
        "device": device_name(args.device),
        "torch": torch.__version__,
        "sizes": asdict(args.sizes),
        "steps": args.steps,
        "ok": not problems,
        "failures": problems,
        "wall_s": wall,
        "runs": [asdict(r) for r in results],
        "predict": predict,
        "table": table(results, args.device),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, allow_nan=True))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no CUDA device (--device cpu is the dry run)")
        return 2
    temporary = args.work_dir is None
    args.work_dir = (args.work_dir or Path(tempfile.mkdtemp(prefix="dastc-gpu-check-"))).absolute()
    start = time.perf_counter()
    data_dir = write_benchmark(args.work_dir / "data", args.sizes)
    print(f"fixture data {args.sizes} written in {time.perf_counter() - start:.1f} s", flush=True)
    results, predict = run_all(args, data_dir)
    wall = time.perf_counter() - start
    problems = failures(results, predict, wall, args.time_limit)
    print_report(args, results, predict, wall, problems)
    if args.out:
        write_json(args.out, args, results, predict, wall, problems)
    if temporary and not args.keep and not problems:
        shutil.rmtree(args.work_dir, ignore_errors=True)
    elif problems or args.keep:  # the logs say what went wrong
        print(f"work dir (data, runs, logs): {args.work_dir}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
