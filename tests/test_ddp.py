"""Two-process DDP on CPU (gloo), launched by torchrun as on a cluster: every rank ends with the same student
and teacher, the ranks' batches never share a clip and together are the single-process global batch, the run
writes one directory, and its sharded validation equals a single-process evaluation of the same checkpoint."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dastc.build import build_datamodule
from dastc.config import compose_config
from dastc.data.datamodule import PairedClips
from dastc.eval import evaluate

TESTS = Path(__file__).resolve().parent
BATCH = 2  # per rank


def _torchrun(root: Path, overrides: list[str]) -> None:
    """``dastc.train`` in 2 CPU processes (gloo) started by torchrun, each saving its view to root/rank<r>.pt."""
    root.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    done = subprocess.run(
        [*command, str(TESTS / "ddp_worker.py"), str(root), *overrides],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]


def _overrides(data_dir, log_dir, steps: int) -> list[str]:
    return [
        f"paths.data_dir={data_dir}",
        f"paths.log_dir={log_dir}",  # the run directory is named by the launcher, not given
        "trainer=cpu",
        "trainer.devices=2",
        "trainer.strategy=ddp",
        f"trainer.max_steps={steps}",
        "method=dastc",
        "dataset.schedule.warmup_steps=1",
        "dataset.schedule.feature_fusion_start=0",
        "dataset.schedule.val_every=3",
        "dataset.schedule.poly_horizon=10",  # the lr schedule must not depend on where a run stops
        f"dataset.batch_size={BATCH}",
        "logger=csv",
    ]


@pytest.fixture(scope="module")
def ddp_run(data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    overrides = _overrides(data_dir, root / "outputs", 3)
    _torchrun(root, overrides)
    records = [torch.load(root / f"rank{r}.pt", weights_only=False) for r in range(2)]
    (run_dir,) = (root / "outputs/train/runs").iterdir()
    return records, run_dir, overrides


def test_every_rank_ends_with_the_same_student_and_teacher(ddp_run):
    (first, second), _, _ = ddp_run
    assert (first["rank"], second["rank"], first["world_size"]) == (0, 1, 2)
    for net in ("student", "teacher"):
        assert first[net].keys() == second[net].keys()
        for name, value in first[net].items():
            assert torch.equal(value, second[net][name]), f"{net}.{name} differs between ranks"
    # ... and training moved them: the teacher is not still its initial copy of an untrained student.
    assert first["teacher"]["steps"] == 2  # two EMA updates after the warm-up step (its restart: the third)
    assert not all(torch.equal(v, first["teacher"][f"model.{k}"]) for k, v in first["student"].items())


def test_the_checkpoint_keeps_each_ranks_own_random_state(ddp_run):
    _, run_dir, _ = ddp_run
    stored = torch.load(run_dir / "checkpoints/last.ckpt", weights_only=False)
    states = stored["dastc_rng_per_rank"]
    assert len(states) == 2
    assert not torch.equal(states[0]["torch"], states[1]["torch"])  # ranks draw their own dropout masks
    assert torch.equal(stored["dastc_rng"]["torch"], states[0]["torch"])


def test_ranks_see_disjoint_clips_that_make_up_the_single_process_global_batch(ddp_run, data_dir):
    (first, second), _, overrides = ddp_run
    assert [s["step"] for s in first["steps"]] == [0, 1, 2] == [s["step"] for s in second["steps"]]
    cfg = compose_config(
        "train", [o for o in overrides if o.startswith(("paths.data_dir", "method", "dataset"))]
    )
    datamodule = build_datamodule(cfg, training=False)
    datamodule.setup("fit")
    pairs = PairedClips(datamodule.datasets["source"], datamodule.datasets["target"], cfg.seed)

    def clip(dataset, index):
        meta = datamodule.datasets[dataset][index]["meta"]
        return meta["sequence"], tuple(meta["frame_ids"])

    for step, (a, b) in enumerate(zip(first["steps"], second["steps"], strict=True)):
        assert not set(a["source"]) & set(b["source"]), f"step {step}: a source clip on both ranks"
        global_batch = [pairs.indices(g) for g in range(2 * BATCH * step, 2 * BATCH * (step + 1))]
        assert a["source"] + b["source"] == [clip("source", s) for s, _ in global_batch]
        assert a["target"] + b["target"] == [clip("target", t) for _, t in global_batch]


def test_sharded_validation_equals_a_single_process_evaluation(ddp_run, data_dir, tmp_path):
    _, run_dir, _ = ddp_run
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("*.ckpt")) == ["best.ckpt", "last.ckpt"]
    logged = json.loads((run_dir / "metrics.json").read_text())
    assert logged["step"] == 3
    cfg = compose_config(
        "eval",
        [f"ckpt_path={run_dir}/checkpoints/last.ckpt", f"paths.data_dir={data_dir}"],
        output_dir=tmp_path,
    )
    single = evaluate(cfg)
    assert (
        single == logged["metrics"]
    )  # integer confusion counts: exactly equal when each clip is scored once


def test_alignment_aggregates_summed_over_ranks_are_the_global_batch_ones(tmp_path):
    import socket

    import torch.multiprocessing as mp
    from ddp_worker import aggregate_rank

    from dastc.methods.alignment import class_aggregates, intra_class_loss

    torch.manual_seed(0)
    data = {
        "features": torch.randn(4, 6, 5, 7),
        "labels": torch.randint(0, 4, (4, 5, 7)),
        "weights": torch.rand(4, 5, 7),
        "other": torch.randn(4, 6),
    }
    data["labels"][:2][data["labels"][:2] == 3] = 2  # class 3 only in rank 1's half
    data["labels"][2:][data["labels"][2:] == 0] = 255  # class 0 only in rank 0's half
    torch.save(data, tmp_path / "input.pt")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(aggregate_rank, args=(2, port, str(tmp_path / "RANK.pt")), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"{r}.pt") for r in range(2)]

    features = data["features"].clone().requires_grad_(True)
    means, present = class_aggregates(features, data["labels"], data["weights"], 4, 5)
    loss = intra_class_loss(means, data["other"], present & data["other"].abs().sum(1).gt(0))
    loss.backward()
    assert present.all()  # classes 0 and 3 are each on one rank only, yet present in the global aggregate
    for r, rank in enumerate(ranks):
        torch.testing.assert_close(rank["means"], means.detach())
        assert torch.equal(rank["present"], present)
        torch.testing.assert_close(rank["loss"], loss.detach())
        # Each rank's pixels get 2x the single-process gradient; DDP's averaging over 2 ranks makes it exact.
        torch.testing.assert_close(rank["grad"] / 2, features.grad[2 * r : 2 * r + 2])


@pytest.mark.slow
def test_a_ddp_run_resumed_from_a_periodic_checkpoint_ends_with_the_uninterrupted_weights(data_dir, tmp_path):
    # Dropout (ACCEL's head) draws differ per rank: each rank's random state must come back with the checkpoint.
    extra = ["backbone=accel", "backbone.depth=18", "dataset.schedule.ckpt_every=2"]
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    _torchrun(whole, [*_overrides(data_dir, whole / "outputs", 4), *extra])
    (run_dir,) = (whole / "outputs/train/runs").iterdir()
    periodic = run_dir / "checkpoints/step000002.ckpt"
    assert (
        torch.load(periodic, weights_only=False)["PairedClipDataModule"]["samples_consumed"] == 2 * 2 * BATCH
    )
    _torchrun(resumed, [*_overrides(data_dir, whole / "outputs", 4), *extra, f"ckpt_path={periodic}"])
    for rank in range(2):
        a = torch.load(whole / f"rank{rank}.pt", weights_only=False)
        b = torch.load(resumed / f"rank{rank}.pt", weights_only=False)
        assert [s["source"] for s in b["steps"]] == [s["source"] for s in a["steps"][2:]]  # the same clips
        for net in ("student", "teacher"):
            for name, value in a[net].items():
                assert torch.equal(value, b[net][name]), f"rank {rank}: {net}.{name}"


def test_run_stamp_is_shared_by_the_processes_of_one_launch(monkeypatch):
    from dastc.config import run_stamp
    from dastc.errors import ConfigError

    for name in ("SLURM_JOB_ID", "SLURM_NTASKS", "SLURM_ARRAY_TASK_ID", "TORCHELASTIC_RUN_ID", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert len(run_stamp("%Y-%m-%d_%H-%M-%S")) == 19  # a plain run: its start time
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert run_stamp("%Y").isdigit()  # one SLURM task: an ordinary run
    monkeypatch.setenv("SLURM_NTASKS", "8")
    assert run_stamp("%Y") == "slurm-4242"
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert run_stamp("%Y") == "slurm-4242_3"
    for name in ("SLURM_JOB_ID", "SLURM_NTASKS", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "synthia-tps")
    monkeypatch.setenv("WORLD_SIZE", "8")
    assert run_stamp("%Y") == "torchrun-synthia-tps"
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")  # torchrun without --rdzv-id or --standalone
    with pytest.raises(ConfigError, match="pass --rdzv-id"):
        run_stamp("%Y")


def test_processes_started_by_lightning_write_into_rank_zeros_run_directory(tmp_path):
    # Lightning starts ranks 1.. with hydra.run.dir=<rank 0's directory>; their own ${run_stamp} may name
    # another second, so the run takes Hydra's output directory.
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict, read_write

    from dastc.config import use_job_output_dir

    cfg = compose_config("train", [], output_dir=tmp_path / "rank1-own-guess")
    hydra_cfg = HydraConfig.get()
    with read_write(hydra_cfg), open_dict(hydra_cfg):
        hydra_cfg.runtime.output_dir = str(tmp_path / "rank0")
    use_job_output_dir(cfg)
    assert cfg.paths.output_dir == str(tmp_path / "rank0")
