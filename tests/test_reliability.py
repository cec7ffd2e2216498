"""Resume, checkpoints, reproducibility, numerical guards and bad input (issue: reliability)."""

import json
import shutil
from pathlib import Path

import fsspec.implementations.local
import pytest
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from test_entry_points import run

from dastc.checkpoint import check_compatible, load_run_checkpoint, resolve_ckpt_path
from dastc.config import compose_config
from dastc.data.datamodule import PairedClips
from dastc.data.toy import ToyClips
from dastc.errors import CheckpointError
from dastc.methods.base import TrainingDivergedError
from dastc.methods.source_only import SourceOnly
from dastc.train import train

# ACCEL has dropout, so an exact resume also needs the random state restored. A killed run keeps its
# config, lr schedule included: the poly horizon is pinned so that "3 steps then resume to 6" is one.
ACCEL = ["backbone=accel", "backbone.depth=18"]
QUICK = [
    "dataset.batch_size=2",
    "dataset.schedule.val_every=3",
    "dataset.schedule.ckpt_every=3",
    "dataset.schedule.poly_horizon=6",
    "trainer.limit_val_batches=1",
    "logger=csv",
]


def _train(data_dir, out, *overrides):
    cfg = compose_config("train", [f"paths.data_dir={data_dir}", *QUICK, *overrides], output_dir=out)
    return train(cfg)


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def test_kill_and_resume_gives_the_weights_of_an_uninterrupted_run(data_dir, tmp_path):
    _train(data_dir, tmp_path / "full", *ACCEL, "trainer.max_steps=6")  # a checkpoint every 3 steps
    # A run killed after step 3: its last.ckpt was written at the end of that step, like the periodic one,
    # before Lightning counts the step's batch completed. The stream must continue after that batch.
    periodic = tmp_path / "full/checkpoints/step000003.ckpt"
    (tmp_path / "half/checkpoints").mkdir(parents=True)
    shutil.copy(periodic, tmp_path / "half/checkpoints/last.ckpt")
    assert torch.load(periodic, weights_only=False)["PairedClipDataModule"]["samples_consumed"] == 6
    # Continue the interrupted run in its own directory.
    cfg = compose_config(
        "train",
        [
            f"paths.data_dir={data_dir}",
            *QUICK,
            *ACCEL,
            "trainer.max_steps=6",
            f"ckpt_path={tmp_path / 'half'}",
        ],
    )
    assert cfg.paths.output_dir == str(tmp_path / "half")
    train(cfg)
    full, resumed = (
        _weights(tmp_path / "full/checkpoints/last.ckpt"),
        _weights(tmp_path / "half/checkpoints/last.ckpt"),
    )
    assert full.keys() == resumed.keys()
    for key in full:
        assert torch.equal(full[key], resumed[key]), key  # student and teacher alike
    ckpt = torch.load(tmp_path / "half/checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 6
    assert ckpt["PairedClipDataModule"]["samples_consumed"] == 12
    assert ckpt["optimizer_states"] and ckpt["lr_schedulers"] and "dastc_rng" in ckpt


def test_same_seed_gives_identical_metrics(data_dir, tmp_path):
    a = _train(data_dir, tmp_path / "a", "trainer.max_steps=3", "trainer.deterministic=true")
    b = _train(data_dir, tmp_path / "b", "trainer.max_steps=3", "trainer.deterministic=true")
    assert a == b
    c = _train(data_dir, tmp_path / "c", "trainer.max_steps=3", "trainer.deterministic=true", "seed=7")
    assert c != a


def test_a_kill_during_a_checkpoint_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = TorchCheckpointIO()
    io.save_checkpoint({"step": 1, "w": torch.ones(1000)}, path)

    def dies_halfway(self, data):
        self.f.write(data[: len(data) // 2])
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(fsspec.implementations.local.LocalFileOpener, "write", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"step": 2, "w": torch.zeros(1000)}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no half-written file left beside it


# The NaN guards live in the base method; source-only exercises them in the fewest passes.
SOURCE_ONLY = "method=source_only"


def _nan_losses(at_steps):
    original = SourceOnly.training_losses

    def losses(self, batch):
        out = original(self, batch)
        if at_steps(self.trainer.global_step):
            out["source_ce"] = out["source_ce"] * float("nan")
        return out

    return losses


def test_a_nan_loss_is_skipped_with_a_warning_naming_it(data_dir, tmp_path, monkeypatch, caplog):
    calls = []
    bad_once = _nan_losses(lambda step: step == 1 and not calls.append(step) and len(calls) == 1)
    monkeypatch.setattr(SourceOnly, "training_losses", bad_once)
    _train(data_dir, tmp_path / "run", SOURCE_ONLY, "trainer.max_steps=3")
    assert "skipping step 1: loss source_ce is not finite" in caplog.text
    ckpt = torch.load(tmp_path / "run/checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 3 and ckpt["PairedClipDataModule"]["samples_consumed"] == 6
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())


def test_a_persistent_nan_stops_the_run_and_keeps_the_last_good_checkpoint(data_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(SourceOnly, "training_losses", _nan_losses(lambda step: step >= 3))
    with pytest.raises(TrainingDivergedError, match=r"loss source_ce is not finite for 5 consecutive steps"):
        _train(data_dir, tmp_path / "run", SOURCE_ONLY, "trainer.max_steps=20")
    # Steps 3-7 were skipped: the checkpoint written at step 6 still holds the weights of step 3.
    good = load_run_checkpoint(tmp_path / "run/checkpoints/step000003.ckpt")["state_dict"]
    last = load_run_checkpoint(tmp_path / "run/checkpoints/last.ckpt")
    assert last["global_step"] == 6
    for key, value in last["state_dict"].items():
        assert torch.equal(value, good[key]), key


def test_a_nan_gradient_is_skipped_too(data_dir, tmp_path, monkeypatch, caplog):
    original = SourceOnly.training_losses

    def nan_gradient(self, batch):
        out = original(self, batch)
        if self.trainer.global_step == 0 and not getattr(self, "_done", False):
            self._done = True
            weight = next(self.student.parameters())
            out["source_ce"] = out["source_ce"] + (weight * 0).sum().sqrt()  # value 0, gradient 0 x inf = NaN
        return out

    monkeypatch.setattr(SourceOnly, "training_losses", nan_gradient)
    _train(data_dir, tmp_path / "run", SOURCE_ONLY, "trainer.max_steps=2")
    assert "gradient of" in caplog.text and "is not finite" in caplog.text


def test_resume_rejects_a_checkpoint_of_another_network_or_class_space(data_dir, tmp_path):
    _train(data_dir, tmp_path / "run", "trainer.max_steps=1")
    ckpt = load_run_checkpoint(tmp_path / "run/checkpoints/last.ckpt")
    other = compose_config("train", [f"paths.data_dir={data_dir}", *ACCEL])
    with pytest.raises(CheckpointError, match=r"another network than backbone= asks for \(.*_target_"):
        check_compatible(ckpt, other, "last.ckpt")
    classes = compose_config("train", [f"paths.data_dir={data_dir}", "dataset.class_names=[a,b,c,d,e,f,g,h]"])
    with pytest.raises(CheckpointError, match="trained for 8 classes"):
        check_compatible(ckpt, classes, "last.ckpt")


def test_checkpoint_paths_are_resolved_or_refused_clearly(tmp_path):
    with pytest.raises(CheckpointError, match="ckpt_path=last found no"):
        resolve_ckpt_path("last", tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_ckpt_path(str(tmp_path / "nothing"), tmp_path)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints/last.ckpt").write_bytes(b"not a checkpoint")
    assert resolve_ckpt_path(str(tmp_path), "/elsewhere") == tmp_path / "checkpoints/last.ckpt"
    with pytest.raises(CheckpointError, match="could not be read"):
        load_run_checkpoint(tmp_path / "checkpoints/last.ckpt")


@pytest.fixture
def damaged_data(data_dir, tmp_path):
    """A copy of the toy data whose first training clip (seed 1234) has a truncated current frame."""
    copy = tmp_path / "data"
    shutil.copytree(data_dir, copy)
    source = ToyClips(copy / "toy", "source", "train", 2)
    first, _ = PairedClips(source, ToyClips(copy / "toy", "target", "train", 3), seed=1234).indices(0)
    frame = Path(source[first]["meta"]["paths"][-1])
    frame.write_bytes(frame.read_bytes()[:50])
    return copy, frame


def test_a_corrupt_frame_in_a_worker_is_one_sentence_naming_it(damaged_data, tmp_path):
    data, frame = damaged_data
    proc = run(
        "dastc.train",
        f"paths.data_dir={data}",
        "dataset.num_workers=1",
        "dataset.batch_size=2",
        "trainer.max_steps=2",
        "callbacks=none",
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: frame {frame} is truncated or not a readable image"]
    assert "Traceback" not in proc.stderr


def test_bad_clips_can_be_skipped_and_counted(damaged_data, tmp_path):
    data, frame = damaged_data
    out = tmp_path / "run"
    proc = run(
        "dastc.train",
        f"paths.data_dir={data}",
        f"paths.output_dir={out}",
        "dataset.on_bad_clip=skip",
        "dataset.batch_size=2",
        "trainer.max_steps=2",
        "dataset.schedule.val_every=2",
        "callbacks=none",
        cwd=tmp_path,
    )
    assert json.loads((out / "metrics.json").read_text())["bad_training_clips_skipped"] == 1
    printed = proc.stdout.replace("\n", "")  # the console wraps long lines
    assert "unreadable training clips were skipped" in printed and str(frame) in printed
