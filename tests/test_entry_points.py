"""The command-line entry points, run as a user would (subprocesses through Hydra)."""

import json
import os
import subprocess
import sys

QUICK = [
    "trainer.max_steps=6",
    "dataset.schedule.val_every=3",
    "dataset.schedule.ckpt_every=3",
    "dataset.batch_size=2",
    "dataset.val_batch_size=16",
]


def run(module, *args, cwd, check=True):
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{module} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def test_train_then_eval_reproduces_the_validation_miou(data_dir, tmp_path):
    out = tmp_path / "run"
    proc = run("dastc.train", f"paths.data_dir={data_dir}", f"paths.output_dir={out}", *QUICK, cwd=tmp_path)
    assert "Target mIoU" in proc.stdout
    trained = json.loads((out / "metrics.json").read_text())
    assert trained["step"] == 6 and trained["selection"] == "final checkpoint"
    assert f"{trained['metrics']['target']['mIoU']:.2f}" in proc.stdout.split("Target mIoU")[1]
    assert (out / ".hydra" / "config.yaml").is_file()
    assert {p.name for p in (out / "checkpoints").iterdir()} >= {
        "last.ckpt",
        "step000003.ckpt",
        "step000006.ckpt",
    }
    assert "val/mIoU" in (out / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert (out / "metrics.md").read_text().count("|") > 10

    proc = run(
        "dastc.eval", f"ckpt_path={out}/checkpoints/last.ckpt", f"paths.data_dir={data_dir}", cwd=tmp_path
    )
    (eval_dir,) = (out / "eval").iterdir()
    evaluated = json.loads((eval_dir / "metrics.json").read_text())
    assert evaluated["metrics"] == trained["metrics"]  # same numbers, exactly
    assert "Target mIoU" in proc.stdout


def test_other_loggers_work_offline(data_dir, tmp_path):
    out = tmp_path / "run"
    proc = run(
        "dastc.train",
        f"paths.data_dir={data_dir}",
        f"paths.output_dir={out}",
        "logger=[tensorboard,wandb]",
        "callbacks=none",
        *QUICK,
        cwd=tmp_path,
    )
    for expected in ("wandb/offline-run-*/run-*.wandb", "tensorboard/events.out.tfevents.*"):
        assert list(out.glob(expected)), proc.stdout[-2000:]
    assert "W&B is logging offline" in proc.stdout


def test_unknown_dataset_fails_with_a_short_message(tmp_path):
    proc = run("dastc.train", "dataset=nosuch", cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert "Could not find 'dataset/nosuch'" in proc.stderr and "Traceback" not in proc.stderr


def test_unknown_key_fails_with_a_short_message(tmp_path):
    proc = run("dastc.train", "trainer.nosuch=1", cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert "Key 'nosuch' is not in struct" in proc.stderr and "Traceback" not in proc.stderr


def test_missing_data_fails_with_one_sentence(tmp_path):
    proc = run(
        "dastc.train",
        f"paths.data_dir={tmp_path / 'nothing'}",
        "dataset.prepare.generate=false",
        f"paths.output_dir={tmp_path / 'run'}",
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "toy benchmark is not at" in errors[0] and "Traceback" not in proc.stderr


def test_eval_of_a_missing_checkpoint_fails_with_one_sentence(tmp_path):
    proc = run("dastc.eval", f"ckpt_path={tmp_path}/run/checkpoints/last.ckpt", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr


def test_default_run_directory_and_generation_in_data_dir(tmp_path):
    """No paths given: data goes to ./data, the run to ./outputs/train/runs/<time>."""
    run(
        "dastc.train",
        "trainer.max_steps=2",
        "dataset.schedule.val_every=2",
        "callbacks=none",
        "dataset.prepare.frames_per_sequence=4",
        cwd=tmp_path,
    )
    assert (tmp_path / "data" / "toy" / "spec.json").is_file()
    (run_dir,) = (tmp_path / "outputs" / "train" / "runs").iterdir()
    assert (run_dir / "metrics.json").is_file() and (run_dir / ".hydra" / "config.yaml").is_file()


def test_train_with_the_accel_backbone(data_dir, tmp_path):
    out = tmp_path / "run"
    proc = run(
        "dastc.train",
        f"paths.data_dir={data_dir}",
        f"paths.output_dir={out}",
        "backbone=accel",
        "backbone.depth=18",
        "trainer.limit_val_batches=1",
        "trainer.max_steps=2",
        "dataset.schedule.val_every=2",
        "callbacks=none",
        "dataset.batch_size=2",
        cwd=tmp_path,
    )
    assert "Target mIoU" in proc.stdout and (out / "checkpoints" / "last.ckpt").is_file()
