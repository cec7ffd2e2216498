"""Sweeps: a 2-value Hydra multirun through the CLI (two run directories and one summary), the summary of a
sweep with a failed job, the Optuna search and SLURM launcher configs."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from dastc.sweep_summary import collect_jobs, summary_markdown

ROOT = Path(__file__).resolve().parent.parent
TINY = [
    "trainer.max_steps=2",
    "dataset.schedule.val_every=2",
    "dataset.batch_size=2",
    "trainer.limit_val_batches=1",
]


def _sweep(tmp_path, data_dir, *overrides):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dastc.train",
            "-m",
            *overrides,
            *TINY,
            f"paths.data_dir={data_dir}",
            f"paths.log_dir={tmp_path}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (sweep_dir,) = (tmp_path / "train" / "multiruns").iterdir()
    return sweep_dir, done.stdout


def test_two_value_multirun_gives_two_run_directories_and_a_summary(tmp_path, data_dir):
    sweep_dir, stdout = _sweep(tmp_path, data_dir, "seed=1,2", "method=source_only")
    jobs = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir())
    assert jobs == ["0", "1"]
    for job, seed in (("0", 1), ("1", 2)):
        stored = OmegaConf.load(sweep_dir / job / ".hydra" / "config.yaml")
        assert stored.seed == seed
        assert (sweep_dir / job / "checkpoints" / "last.ckpt").is_file()
        assert (sweep_dir / job / "metrics.json").is_file()
    rows = list(csv.DictReader((sweep_dir / "summary.csv").open()))
    assert [(r["job"], r["overrides"]) for r in rows] == [
        ("0", "seed=1"),
        ("1", "seed=2"),
    ]  # shared ones dropped
    for row in rows:
        stored = json.loads((Path(row["dir"]) / "metrics.json").read_text())["metrics"]
        assert float(row["target mIoU"]) == stored["target"]["mIoU"]
    assert "summary.md and summary.csv written" in stdout


def test_summary_lists_a_failed_job_and_keeps_the_others(tmp_path):
    for job, score in (("0", 40.0), ("1", None), ("2", 45.5)):
        folder = tmp_path / job / ".hydra"
        folder.mkdir(parents=True)
        (folder / "overrides.yaml").write_text(f"- lr={job}\n- seed=3\n")
        if score is not None:
            metrics = {"metrics": {"target": {"mIoU": score}, "source": {"mIoU": 60.0}}}
            (tmp_path / job / "metrics.json").write_text(json.dumps(metrics))
    jobs = collect_jobs(tmp_path)
    assert [j["overrides"] for j in jobs] == ["lr=0", "lr=1", "lr=2"]
    assert summary_markdown(jobs).splitlines() == [
        "| job | overrides | target mIoU | source mIoU |",
        "|---|---|---|---|",
        "| 0 | lr=0 | 40.00 | 60.00 |",
        "| 1 | lr=1 | failed / missing | failed / missing |",
        "| 2 | lr=2 | 45.50 | 60.00 |",
    ]


def test_optuna_search_runs_its_trials_and_reports_the_best(tmp_path, data_dir):
    sweep_dir, stdout = _sweep(
        tmp_path,
        data_dir,
        "hparams_search=toy_dastc_optuna",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.sampler.n_startup_trials=2",
        "dataset.schedule.warmup_steps=1",
    )
    rows = list(csv.DictReader((sweep_dir / "summary.csv").open()))
    assert [r["job"] for r in rows] == ["0", "1"]
    assert all("method.fusion.alpha=" in r["overrides"] for r in rows)  # each trial its own draw
    best = OmegaConf.load(sweep_dir / "optimization_results.yaml")
    assert best.best_value == pytest.approx(max(float(r["target mIoU"]) for r in rows))
    assert set(best.best_params) == {
        "method.fusion.alpha",
        "method.align.weight",
        "method.fusion.target_threshold",
        "dataset.schedule.lr",
    }


def test_slurm_launcher_asks_for_the_trainers_nodes_and_devices():
    from hydra import compose, initialize_config_dir

    from dastc.config import CONFIG_DIR

    overrides = ["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 4, 4)
    assert cfg.trainer.strategy == "ddp"


@pytest.mark.slow
def test_submitit_launcher_runs_the_jobs_of_a_sweep(tmp_path, data_dir):
    # submitit's local executor: the SLURM launcher's code path (pickled jobs, one process each) without SLURM.
    sweep_dir, _ = _sweep(
        tmp_path, data_dir, "hydra/launcher=submitit_local", "seed=1,2", "method=source_only"
    )
    rows = list(csv.DictReader((sweep_dir / "summary.csv").open()))
    assert [(r["job"], r["overrides"]) for r in rows] == [("0", "seed=1"), ("1", "seed=2")]
    assert all(r["target mIoU"] for r in rows)
