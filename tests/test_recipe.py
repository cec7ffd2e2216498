"""The paper's two stages in one run (dastc.recipe): TPS, then DA-STC from it, continued across the boundary."""

import json
import shutil

import torch
from omegaconf import OmegaConf

from dastc.config import compose_config
from dastc.recipe import is_two_stage, method_group
from dastc.train import train

# The toy benchmark given the real benchmarks' two-stage recipe: small and quick.
TWO_STAGE = [
    "+dataset.schedule.two_stage=true",
    "dataset.schedule.warmup_steps=0",
    "dataset.batch_size=2",
    "trainer.max_steps=2",
    "dataset.schedule.ckpt_every=1",
    "dataset.schedule.val_every=2",
    "dataset.schedule.poly_horizon=2",
    "trainer.limit_val_batches=1",
    "~callbacks.sample_panels",
    "logger=csv",
]


def _cfg(data_dir, logs, name, *overrides):
    return compose_config(
        "train",
        [f"paths.data_dir={data_dir}", f"paths.log_dir={logs}", *TWO_STAGE, *overrides],
        output_dir=logs / "train" / "runs" / name,
    )


def test_stage_one_is_method_tps_as_the_command_line_composes_it(data_dir):
    composed = compose_config("train", [f"paths.data_dir={data_dir}", "method=tps"]).method
    assert method_group("tps") == OmegaConf.to_container(composed, resolve=False)


def test_only_dastc_on_a_two_stage_benchmark_without_init_from_runs_two_stages(data_dir, tmp_path):
    assert is_two_stage(compose_config("train", ["dataset=synthia"]))
    assert not is_two_stage(compose_config("train", ["dataset=synthia", "method=tps"]))
    assert not is_two_stage(compose_config("train", ["dataset=synthia", "model.init_from=RUN"]))
    assert not is_two_stage(compose_config("train", []))  # the toy default: one run with a warm-up


def test_a_run_killed_in_stage_two_continues_there_when_the_same_command_runs_again(data_dir, tmp_path):
    logs = tmp_path / "logs"
    first = logs / "train" / "runs" / "first"
    train(_cfg(data_dir, logs, "first"))
    state = json.loads((first / "recipe.json").read_text())
    assert state["finished"] and (first / "stage1_tps/metrics.json").is_file()
    stage1 = json.loads((first / "stage1_tps/metrics.json").read_text())
    assert (
        stage1["method"] == "TPS"
        and json.loads((first / "stage2_dastc/metrics.json").read_text())["method"] == "DASTC"
    )
    uninterrupted = torch.load(first / "stage2_dastc/checkpoints/last.ckpt", weights_only=False)["state_dict"]
    # Killed after stage 2's first step: its last.ckpt is that step's, stage 2 has no metrics, not finished.
    shutil.copy(
        first / "stage2_dastc/checkpoints/step000001.ckpt", first / "stage2_dastc/checkpoints/last.ckpt"
    )
    (first / "stage2_dastc/metrics.json").unlink()
    (first / "recipe.json").write_text(json.dumps({**state, "finished": False}))
    stage1_mtime = (first / "stage1_tps/checkpoints/last.ckpt").stat().st_mtime_ns
    train(_cfg(data_dir, logs, "second"))  # the same command: a new run directory would be "second"
    assert not (logs / "train/runs/second/stage1_tps").exists()  # it continued the first run instead
    assert (first / "stage1_tps/checkpoints/last.ckpt").stat().st_mtime_ns == stage1_mtime  # stage 1 kept
    resumed = torch.load(first / "stage2_dastc/checkpoints/last.ckpt", weights_only=False)
    assert resumed["global_step"] == 2
    for key, value in uninterrupted.items():
        assert torch.equal(value, resumed["state_dict"][key]), key
    assert json.loads((first / "recipe.json").read_text())["finished"]
