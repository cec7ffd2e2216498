"""Run directories: every run started without paths.output_dir gets its own (conf/paths/default.yaml)."""

from __future__ import annotations

from datetime import datetime

import pytest

import dastc.config
from dastc.config import claim_run_dir, compose_config, use_job_output_dir

FROZEN = datetime(2026, 1, 2, 3, 4, 5)


class FrozenClock(datetime):
    @classmethod
    def now(cls, tz=None):
        return FROZEN


@pytest.fixture
def one_second(monkeypatch):
    """Every run starts in the same second; no outside launcher."""
    monkeypatch.setattr(dastc.config, "datetime", FrozenClock)
    for name in ("SLURM_JOB_ID", "TORCHELASTIC_RUN_ID", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)


def output_dir(tmp_path, *overrides: str) -> str:
    return compose_config("train", [f"paths.log_dir={tmp_path}", *overrides]).paths.output_dir


def test_two_runs_started_in_the_same_second_get_two_directories(tmp_path, one_second):
    runs = tmp_path / "train" / "runs"
    first, second = output_dir(tmp_path), output_dir(tmp_path)
    assert (first, second) == (str(runs / "2026-01-02_03-04-05"), str(runs / "2026-01-02_03-04-05_2"))
    assert sorted(p.name for p in runs.iterdir()) == ["2026-01-02_03-04-05", "2026-01-02_03-04-05_2"]


def test_one_run_names_one_directory_however_often_it_is_read(tmp_path, one_second):
    cfg = compose_config("train", [f"paths.log_dir={tmp_path}"])
    assert cfg.paths.output_dir == cfg.paths.output_dir == cfg.trainer.default_root_dir
    from hydra.core.hydra_config import HydraConfig

    assert HydraConfig.get().runtime.output_dir == cfg.paths.output_dir
    assert len(list((tmp_path / "train" / "runs").iterdir())) == 1


def test_composing_claims_nothing_until_the_directory_is_read(tmp_path, one_second):
    compose_config("train", [f"paths.log_dir={tmp_path}"]).method  # noqa: B018
    assert not (tmp_path / "train").exists()


def test_claiming_is_atomic_per_name(tmp_path):
    names = [claim_run_dir(str(tmp_path), "stamp") for _ in range(3)]
    assert [n.rsplit("/", 1)[-1] for n in names] == ["stamp", "stamp_2", "stamp_3"]


def test_all_ranks_of_a_torchrun_or_slurm_launch_share_one_unsuffixed_directory(
    tmp_path, one_second, monkeypatch
):
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "synthia-tps")
    monkeypatch.setenv("WORLD_SIZE", "2")
    runs = tmp_path / "train" / "runs"
    assert output_dir(tmp_path) == output_dir(tmp_path) == str(runs / "torchrun-synthia-tps")
    monkeypatch.delenv("TORCHELASTIC_RUN_ID")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_NTASKS", "2")
    assert output_dir(tmp_path) == output_dir(tmp_path) == str(runs / "slurm-4242")


def test_a_rank_lightning_started_claims_no_directory(tmp_path, one_second, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")  # it is given rank 0's directory (hydra.run.dir)
    assert output_dir(tmp_path).endswith("2026-01-02_03-04-05")
    assert not (tmp_path / "train").exists()


def test_continuing_a_run_writes_into_it_and_claims_nothing(tmp_path, one_second):
    run = tmp_path / "elsewhere" / "run"
    (run / "checkpoints").mkdir(parents=True)
    assert output_dir(tmp_path, f"ckpt_path={run}") == str(run)
    assert output_dir(tmp_path, f"ckpt_path={run}/checkpoints/last.ckpt") == str(run)
    assert not (tmp_path / "train").exists()


def test_a_sweep_job_takes_its_own_directory_without_claiming_a_run_directory(tmp_path, one_second):
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import open_dict, read_write

    cfg = compose_config("train", [f"paths.log_dir={tmp_path}"])
    hydra_cfg = HydraConfig.get()
    with read_write(hydra_cfg), open_dict(hydra_cfg):
        hydra_cfg.mode = RunMode.MULTIRUN
        hydra_cfg.runtime.output_dir = str(tmp_path / "train" / "multiruns" / "x" / "0")
    use_job_output_dir(cfg)
    assert cfg.paths.output_dir == str(tmp_path / "train" / "multiruns" / "x" / "0")
    assert not (tmp_path / "train" / "runs").exists()
