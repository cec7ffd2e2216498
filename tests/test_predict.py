"""``python -m dastc.predict``: frames or a video in, colourised masks, overlays, videos and consistency out."""

import json
import shutil

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from dastc.config import compose_config
from dastc.errors import DataFileError
from dastc.predict import agreement, predict
from dastc.train import train
from dastc.viz.colour import palette_for


@pytest.fixture(scope="module")
def checkpoint(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    overrides = [f"paths.data_dir={data_dir}", "method=source_only", "trainer.max_steps=2", "callbacks=none"]
    train(compose_config("train", [*overrides, "dataset.batch_size=2", "trainer.limit_val_batches=1"], out))
    return out / "checkpoints" / "last.ckpt"


@pytest.fixture
def frames_dir(data_dir, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for path in sorted((data_dir / "toy/target/val/000/frames").iterdir())[:4]:
        shutil.copy(path, folder / path.name)
    return folder


def _predict(checkpoint, source, out, *overrides):
    cfg = compose_config(
        "predict", [f"ckpt_path={checkpoint}", f"input={source}", *overrides], output_dir=out
    )
    return predict(cfg)


def test_predict_writes_masks_overlays_videos_and_consistency(checkpoint, frames_dir, tmp_path):
    out = tmp_path / "out"
    summary = _predict(checkpoint, frames_dir, out)
    names = sorted(p.stem for p in frames_dir.iterdir())
    assert sorted(p.stem for p in (out / "masks").iterdir()) == names
    assert sorted(p.stem for p in (out / "overlays").iterdir()) == names
    assert (out / "overlay.mp4").stat().st_size > 0 and Image.open(out / "overlay.gif").n_frames == 4
    assert summary["frames"] == 4 and 0.0 <= summary["temporal_consistency"] <= 1.0
    assert json.loads((out / "consistency.json").read_text()) == summary
    classes = ["road", "sidewalk", "building", "sky", "vegetation", "pole", "car", "person"]
    palette = {tuple(c) for c in palette_for(classes)[:8]}
    mask = np.asarray(Image.open(out / "masks" / f"{names[0]}.png"))
    assert mask.shape == (64, 128, 3) and {tuple(c) for c in mask.reshape(-1, 3)} <= palette
    assert tuple(palette_for(classes)[0]) == (128, 64, 128)  # road in the Cityscapes palette


def test_predict_reads_a_video(checkpoint, frames_dir, tmp_path):
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, (128, 64))
    for path in sorted(frames_dir.iterdir()):
        writer.write(cv2.imread(str(path)))
    writer.release()
    summary = _predict(checkpoint, video, tmp_path / "out", "max_frames=3")
    assert summary["frames"] == 3 and len(list((tmp_path / "out" / "masks").iterdir())) == 3


def test_predict_names_a_bad_input(checkpoint, tmp_path):
    with pytest.raises(DataFileError, match="nowhere"):
        _predict(checkpoint, tmp_path / "nowhere", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFileError, match="holds no image files"):
        _predict(checkpoint, tmp_path / "empty", tmp_path / "out")


def test_consistency_counts_agreement_where_the_flow_stays_inside():
    previous = torch.zeros(4, 6, dtype=torch.long)
    previous[:, 3:] = 1
    current = torch.zeros(4, 6, dtype=torch.long)
    current[:, 2:] = 1  # the boundary moved one pixel left: the flow points one pixel right
    flow = torch.zeros(2, 4, 6)
    flow[0] = 1.0
    agree, counted = agreement(previous, current, flow)
    assert (agree, counted) == (20, 20)  # the last column maps outside the previous frame: not counted
    assert agreement(previous, current, torch.zeros(2, 4, 6)) == (20, 24)


def test_predict_command_line(checkpoint, frames_dir, tmp_path):
    from test_entry_points import run

    proc = run("dastc.predict", f"ckpt_path={checkpoint}", f"input={frames_dir}", cwd=tmp_path)
    assert "4 frames segmented; temporal consistency" in proc.stdout
    (out,) = (checkpoint.parent.parent / "predict").iterdir()  # next to the run
    assert (out / "overlay.gif").is_file()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
def test_predict_device_is_the_cpu_without_a_gpu_and_cuda_is_refused_clearly():
    from dastc.errors import ConfigError
    from dastc.predict import resolve_device

    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
    with pytest.raises(ConfigError, match="no CUDA device"):
        resolve_device("cuda")
