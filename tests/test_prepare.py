"""A downloaded benchmark is checked and its missing optical flow computed at the start of training."""

from pathlib import Path

import pytest
from real_fixtures import SYNTHIA_TINY, write_synthia_benchmark

from dastc.config import compose_config
from dastc.errors import DataFileError
from dastc.train import train

QUICK = [
    "dataset=synthia",
    "backbone=accel",
    "backbone.depth=18",
    "backbone.pretrained=null",
    "method=source_only",
    "trainer.max_steps=1",
    "dataset.schedule.val_every=1",
    "dataset.num_workers=0",
    "dataset.pin_memory=false",
    "callbacks=none",
    "logger=csv",
    *SYNTHIA_TINY,
]


def _flows(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "flow").rglob("*.png"))


def test_a_first_run_computes_the_missing_flow_then_trains(tmp_path):
    data_dir = write_synthia_benchmark(tmp_path / "data", flow=False)
    assert not _flows(data_dir)
    cfg = compose_config("train", [f"paths.data_dir={data_dir}", *QUICK], output_dir=tmp_path / "run")
    metrics = train(cfg)
    flows = _flows(data_dir)
    folders = {p.relative_to(data_dir / "flow").parts[0] for p in flows}
    assert folders == {"synthia_seq", "cityscapes_seq"}  # source, target train and val clips alike
    assert metrics["target"]["mIoU"] == metrics["target"]["mIoU"]  # trained and scored (not NaN)
    stamps = {p: p.stat().st_mtime_ns for p in flows}
    train(compose_config("train", [f"paths.data_dir={data_dir}", *QUICK], output_dir=tmp_path / "again"))
    assert {p: p.stat().st_mtime_ns for p in _flows(data_dir)} == stamps  # a second run computes nothing


def test_without_flow_preparation_a_missing_flow_stops_the_run_naming_the_command(tmp_path):
    data_dir = write_synthia_benchmark(tmp_path / "data", flow=False)
    cfg = compose_config(
        "train",
        [f"paths.data_dir={data_dir}", *QUICK, "dataset.prepare.flow=false"],
        output_dir=tmp_path / "r",
    )
    with pytest.raises(DataFileError, match=r"flow files? missing: compute them with `python -m dastc.flow"):
        train(cfg)
    assert not (tmp_path / "r" / "checkpoints").exists()  # stopped before training
