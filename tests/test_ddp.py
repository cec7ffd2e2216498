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


@pytest.fixture(scope="module")
def ddp_run(data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    overrides = [
        f"paths.data_dir={data_dir}",
        f"paths.log_dir={root}/outputs",  # the run directory is named by the launcher, not given
        "trainer=cpu",
        "trainer.devices=2",
        "trainer.strategy=ddp",
        "trainer.max_steps=3",
        "method=dastc",
        "dataset.schedule.warmup_steps=1",
        "dataset.schedule.feature_fusion_start=0",
        "dataset.schedule.val_every=3",
        f"dataset.batch_size={BATCH}",
        "logger=csv",
    ]
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
