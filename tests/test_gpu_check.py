"""scripts/gpu_check.py (`make gpu-check`): its CPU dry run here, the real check where there is a GPU."""

from __future__ import annotations

import importlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dastc.config import compose_config

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gpu_check.py"
METHODS = ("source_only", "tps", "dastc", "dastc_hrda_mic")  # what the check runs, in its order


@pytest.fixture
def gpu_check(monkeypatch):
    """The script as a module (scripts/ is not a package)."""
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    return importlib.import_module("gpu_check")


def run_check(tmp_path: Path, *args: str, timeout: float) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONWARNINGS": "ignore"}
    if "cpu" in args:  # one torch thread per dry run: on a busy 2-core machine (the suite runs two workers)
        env.setdefault("OMP_NUM_THREADS", "1")  # a second one only contends, and the steps take twice as long
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--work-dir", str(tmp_path / "work"), "--out", str(out), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc, json.loads(out.read_text())


def check_rows(proc, result: dict, precisions: tuple[str, ...], steps: int) -> dict:
    """A row per method x precision in the JSON and in the printed table, every run complete and finite."""
    runs = {(r["method"], r["precision"]): r for r in result["runs"]}
    assert set(runs) == {(m, p) for p in precisions for m in METHODS} and result["ok"]
    for (method, precision), run in runs.items():
        assert run["ok"] and run["losses_finite"] and run["steps"] == steps, run
        assert run["median_step_s"] > 0 and run["train_peak_gib"] > 0 and run["val_peak_gib"] > 0
        assert all(math.isfinite(v) for v in run["loss_terms"].values()) and math.isfinite(run["val_miou"])
        assert f"| {method} | {precision} |" in proc.stdout
        if method == "dastc":  # feature-level fusion ran from step 0, on top of TPS's terms
            assert {"source_ce", "target_ce", "feat_s2t_ce", "feat_t2s_ce"} <= set(run["loss_terms"])
        if method == "dastc_hrda_mic":  # and the image-DA options of the preset
            assert {"feat_s2t_ce", "target_mic", "source_fdist"} <= set(run["loss_terms"])
    assert result["predict"]["ok"] and result["predict"]["summary"]["frames"] == 3
    return runs


def test_cpu_dry_run_trains_every_method_validates_and_predicts(tmp_path):
    proc, result = run_check(tmp_path, "--device", "cpu", timeout=300)
    runs = check_rows(proc, result, ("32-true",), steps=2)
    assert result["sizes"]["source"] == [48, 96] and result["sizes"]["files"] == [64, 128]
    # DA-STC is stage 2 of the paper's recipe: it started from the TPS run, as users run it.
    log = Path(runs[("dastc", "32-true")]["log"]).read_text()
    command = log.splitlines()[0]  # the log starts with the command line (the rest is wrapped by rich)
    assert "experiment=synthia2city_dastc" in command and "Initialised" in log
    assert f"model.init_from={tmp_path / 'work' / 'runs' / 'fp32_tps'} " in command
    assert not list((tmp_path / "work" / "runs").glob("*/checkpoints"))  # dropped once done (no --keep)


@pytest.mark.slow
def test_cpu_dry_run_in_bf16_too(tmp_path):
    proc, result = run_check(tmp_path, "--device", "cpu", "--precisions", "32-true,bf16-mixed", timeout=600)
    check_rows(proc, result, ("32-true", "bf16-mixed"), steps=2)


def test_a_diverging_run_fails_the_check_and_is_named(gpu_check, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    # lr 1e30: the first step's update makes every later loss non-finite, so the method skips step 1.
    args = ["--device", "cpu", "--methods", "source_only", "--no-predict", "--work-dir", str(tmp_path)]
    assert gpu_check.main([*args, "dataset.schedule.lr=1e30"]) == 1
    printed = capsys.readouterr().out
    assert "| source_only | 32-true |" in printed and "| **no** |" in printed
    assert "FAILED: source_only 32-true: step 1 was skipped: a loss or gradient was not finite" in printed
    assert "(step 1: loss source_ce is not finite" in printed


def test_failure_reason_quotes_the_error(gpu_check, tmp_path):
    log = tmp_path / "run.log"
    hydra = (
        "Could not override 'trainer.x'.\nTo append to your config use +trainer.x=1\nKey 'x' is not in struct"
    )
    log.write_text(
        f"$ python -m dastc.train trainer.x=1\n\n{hydra}\n\nSet the environment variable HYDRA_FULL_ERROR=1\n"
    )
    assert gpu_check.failure_reason(log, 1) == (
        "exit status 1: Could not override 'trainer.x'. To append to your config use +trainer.x=1"
    )
    log.write_text(
        "$ python -m dastc.train\n\nTraceback (most recent call last):\n  File x\nValueError: bad\n"
    )
    assert gpu_check.failure_reason(log, 1) == "exit status 1: ValueError: bad"
    log.write_text("$ python -m dastc.train\n\nerror: frame /d/x.png is missing\n")
    assert gpu_check.failure_reason(log, 2) == "exit status 2: error: frame /d/x.png is missing"
    assert gpu_check.failure_reason(log, -1) == "timed out"


def test_non_finite_or_skipped_steps_are_caught(gpu_check):
    finite_losses = gpu_check.finite_losses
    good = {
        "time_s": 1.0,
        "skipped": False,
        "terms": {"source_ce": 2.0, "feat_s2t_ce": 1.0, "feat_t2s_ce": 1.0},
    }
    assert finite_losses("dastc", [good, good]) == (True, None)
    nan = {**good, "terms": {**good["terms"], "align": math.nan}}
    assert finite_losses("dastc", [good, nan])[1] == "step 1: loss terms align not finite"
    skipped = {"time_s": 1.0, "skipped": True, "terms": {}}
    assert "step 0 was skipped" in finite_losses("tps", [skipped])[1]
    no_fusion = {**good, "terms": {"source_ce": 2.0}}
    assert "feat_s2t_ce, feat_t2s_ce not logged" in finite_losses("dastc", [no_fusion])[1]
    assert finite_losses("source_only", [no_fusion]) == (True, None)
    assert finite_losses("source_only", []) == (False, "no training step ran")


@pytest.mark.parametrize("method", METHODS)
def test_the_cuda_runs_compose_at_the_papers_sizes(gpu_check, tmp_path, method):
    """What the CUDA check asks of each run, composed here (no GPU needed): paper sizes, ResNet-101 on the GPU,
    bf16, feature fusion from step 0, the probe, and the presets' stage 2 starting from stage 1."""
    args = gpu_check.parse_args([])
    assert args.precisions == ["32-true", "bf16-mixed"] and args.steps == 4
    tps = tmp_path / "runs" / "bf16_tps"
    overrides = gpu_check.train_overrides(
        method, "bf16-mixed", args, tmp_path / "data", tmp_path / "run", tps
    )
    cfg = compose_config("train", overrides)
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "bf16-mixed"
    assert cfg.trainer.max_steps == 4 and cfg.backbone.pretrained is None
    if method == "dastc_hrda_mic":  # the beyond-the-paper preset: MiT-B5 with its options on
        assert cfg.backbone.encoder_name == "mit_b5" and cfg.backbone.multires is not None
        assert cfg.method.mic.enabled and cfg.method.fdist.enabled and cfg.dataset.rcs.enabled
    else:
        assert cfg.backbone.depth == 101
    assert cfg.dataset.source.dataset.crop_bottom == 120 and cfg.dataset.val.label_size is None
    assert list(cfg.dataset.target.dataset.size) == list(cfg.dataset.val.size) == [512, 1024]
    assert cfg.callbacks.gpu_check_probe.out == str(tmp_path / "run" / "gpu_check_probe.json")
    if method in ("tps", "dastc"):
        assert cfg.method.hist_match  # the paper presets' recipe
    if method == "dastc":
        assert cfg.method.fusion.feature_start == 0 and cfg.model.init_from == str(tps)


@pytest.mark.cuda
def test_gpu_check_at_the_papers_sizes(tmp_path):
    proc, result = run_check(tmp_path, timeout=600)
    check_rows(proc, result, ("32-true", "bf16-mixed"), steps=4)
    assert result["sizes"]["source"] == [640, 1280] and result["sizes"]["files"] == [1024, 2048]
    assert result["wall_s"] < 480, "the check must finish in under 8 minutes"
