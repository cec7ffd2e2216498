from __future__ import annotations

import os
from pathlib import Path

import pytest

from dastc.build import build_datamodule
from dastc.config import compose_config
from dastc.data.toy import ensure_toy_benchmark

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no version query over the network at import


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` skip, with a reason, where torch sees no CUDA device."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """A data directory holding the default toy benchmark, generated once per test session (and worker)."""
    root = tmp_path_factory.mktemp("data")
    ensure_toy_benchmark(root / "toy")
    return root


@pytest.fixture
def make_cfg(data_dir, tmp_path):
    """Compose ``train`` with the test's data dir and a fresh output dir; extra overrides as arguments."""

    def make(*overrides: str, config_name: str = "train"):
        return compose_config(
            config_name, [f"paths.data_dir={data_dir}", *overrides], output_dir=tmp_path / "run"
        )

    return make


@pytest.fixture(scope="session")
def batch(data_dir):
    """One DA-STC training batch of the toy benchmark (2 source and 2 target clips, rare-class clips included)."""
    cfg = compose_config("train", [f"paths.data_dir={data_dir}", "method=dastc", "dataset.batch_size=2"])
    dm = build_datamodule(cfg)
    dm.prepare_data()
    dm.setup("fit")
    return next(iter(dm.train_dataloader()))
