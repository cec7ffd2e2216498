"""Your own target videos (``dataset=videos``) and predict's H.264 video: tiny mp4 files and frame folders written on
the spot, read as unlabelled clips, their flow estimated, and a training run on them through the command line."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from real_fixtures import BENCH_SYNTHIA_CROP, BENCH_SYNTHIA_IDS, cityscapes_val, make_synthia
from test_entry_points import run

from dastc.build import build_datamodule
from dastc.config import compose_config
from dastc.data.cityscapes_seq import CityscapesSeq
from dastc.data.videos import CACHE_RECORD, VideoFrames
from dastc.errors import ConfigError, DataFileError, DatasetNotFoundError
from dastc.flow.estimate import estimate
from dastc.predict import write_videos

H, W = 64, 128
SIZE = ["dataset.target.dataset.size=[32,64]", f"dataset.source.dataset.crop_bottom={BENCH_SYNTHIA_CROP}"]


def write_mp4(path: Path, frames: int, shift: int = 0) -> Path:
    """An H.264 video of a red bar 16 pixels wide moving 8 pixels right per frame: frame t's bar is centred
    at x = 8 t + 8 + shift."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = imageio_ffmpeg.write_frames(str(path), (W, H), fps=10, codec="libx264", ffmpeg_log_level="error")
    writer.send(None)
    for t in range(frames):
        frame = np.zeros((H, W, 3), np.uint8)
        frame[:, 8 * t + shift : 8 * t + shift + 16, 0] = 255
        writer.send(frame)
    writer.close()
    return path


def bar_centre(frame: torch.Tensor) -> float:
    """x of the red bar's centre in a [3, h, w] frame, in pixels of a 128-wide frame."""
    red = frame[0].mean(0)
    return float((red * torch.arange(red.numel())).sum() / red.sum()) * W / red.numel()


def write_frame_folder(folder: Path, numbers=(8, 9, 10, 11)) -> Path:
    """Frames named f8.png .. f11.png (name order puts f10 before f8) whose grey level is 20 x their number."""
    folder.mkdir(parents=True, exist_ok=True)
    for n in numbers:
        assert cv2.imwrite(str(folder / f"f{n}.png"), np.full((H, W, 3), 20 * n, np.uint8))
    return folder


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """SYNTHIA-Seq (frames 0..5) and a videos folder of two mp4 files, with every flow both need, computed by
    ``python -m dastc.flow.estimate dataset=videos``'s engine."""
    data = tmp_path_factory.mktemp("videos_data")
    make_synthia(
        data / "SYNTHIA-SEQS-04-DAWN", "original", range(6), range(6), BENCH_SYNTHIA_IDS, BENCH_SYNTHIA_CROP
    )
    write_mp4(data / "videos" / "drive.mp4", 8)
    write_mp4(data / "videos" / "walk.mp4", 5, shift=3)
    overrides = [f"paths.data_dir={data}", "dataset=videos", "flow.workers=0", "flow.progress=false", *SIZE]
    estimate(compose_config("estimate_flow", overrides))
    return data


@pytest.fixture
def videos(data_dir, tmp_path) -> Path:
    """The two mp4 files and a folder of frames."""
    root = tmp_path / "videos"
    root.mkdir()
    for name in ("drive.mp4", "walk.mp4"):
        shutil.copy(data_dir / "videos" / name, root / name)
    write_frame_folder(root / "frames")
    return root


def test_videos_and_a_frame_folder_read_as_unlabelled_clips_in_frame_order(data_dir, videos):
    flows = data_dir / "flow" / "videos"  # the two videos' flows (the frame folder has none: read without)
    reader = VideoFrames(videos, flow_dir=flows, size=(32, 64))
    assert {name: len(frames) for name, frames in reader.sequences.items()} == {
        "drive": 8,
        "walk": 5,
        "frames": 4,
    }
    assert len(reader) == 6 + 3 + 2  # every t with t-2 and t-1 before it
    drive = reader.samples[0]  # sequences in name order: drive, frames, walk
    assert [p.name for p in drive.frames] == ["000000.png", "000001.png", "000002.png"]
    assert drive.frames[0].parent == videos / ".frames" / "drive"
    assert [f.ours for f in drive.flows] == [
        flows / "drive/000001_000000.png",
        flows / "drive/000002_000001.png",
    ]
    clip = reader[0]
    assert clip["frames"].shape == (3, 3, 32, 64) and clip["flow"].shape == (2, 2, 32, 64)
    assert "labels" not in clip and clip["meta"]["frame_ids"] == [0, 1, 2]
    names = [s.sequence for s in reader.samples]
    reader = VideoFrames(videos, flow_dir=None, size=(32, 64), require_flow=False)
    by_sequence = {name: reader[names.index(name)] for name in ("drive", "walk", "frames")}
    for name, first in (("drive", 8), ("walk", 11)):  # the bar moves 8 pixels right per frame
        centres = [bar_centre(f) for f in by_sequence[name]["frames"]]
        assert centres == pytest.approx([first, first + 8, first + 16], abs=1.5), name
    grey = [round(float(f.mean()) * 255) for f in by_sequence["frames"]["frames"]]
    assert grey == [160, 180, 200]  # f8, f9, f10: numbers in names sort as numbers
    assert len(VideoFrames(videos, stride=2, flow_dir=None, require_flow=False)) == 3 + 2 + 1


def test_videos_are_decoded_once_resumed_and_redone_when_they_change(videos, monkeypatch):
    VideoFrames(videos, flow_dir=None, require_flow=False)
    cache = videos / ".frames" / "drive"
    assert json.loads((cache / CACHE_RECORD).read_text())["frames"] == 8

    import dastc.data.videos as module

    decoded = []
    real_decode = module._decode
    monkeypatch.setattr(module, "_decode", lambda *a: decoded.append(a[0].name) or real_decode(*a))
    VideoFrames(videos, flow_dir=None, require_flow=False)
    assert decoded == []  # complete caches are read as they are
    (cache / "000005.png").unlink()  # an interrupted extraction: resumed
    kept = (cache / "000001.png").stat().st_mtime_ns
    VideoFrames(videos, flow_dir=None, require_flow=False)
    assert decoded == ["drive.mp4"] and (cache / "000005.png").is_file()
    assert (cache / "000001.png").stat().st_mtime_ns == kept
    write_mp4(videos / "drive.mp4", 4)  # another video under the same name: decoded afresh
    reader = VideoFrames(videos, flow_dir=None, require_flow=False)
    assert len(reader.sequences["drive"]) == 4 and not (cache / "000005.png").exists()


def test_videos_errors_name_the_folder_the_file_or_the_sequence(videos, tmp_path, caplog):
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        VideoFrames(tmp_path / "nowhere", flow_dir=None, require_flow=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match=r"empty holds no video \(.mp4"):
        VideoFrames(tmp_path / "empty", flow_dir=None, require_flow=False)
    broken = videos / "broken.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises(DataFileError, match=f"video {broken} could not be decoded"):
        VideoFrames(videos, flow_dir=None, require_flow=False)
    broken.unlink()
    write_frame_folder(videos / "short", (1, 2))
    write_mp4(videos / "brief.mp4", 2)
    with caplog.at_level(logging.WARNING):
        reader = VideoFrames(videos, flow_dir=None, require_flow=False)
    assert len(reader.sequences["short"]) == 2 and len(reader) == 11  # the short folder gives no clip
    assert f"sequence {videos / 'short'} has 2 frames, fewer than the 3 of a clip" in caplog.text
    assert f"sequence {videos / 'brief.mp4'} has 2 frames" in caplog.text  # the video, not its frame cache
    with pytest.raises(DatasetNotFoundError, match=r"no sequence in .* has the 9 frames .*too short: "):
        VideoFrames(videos, num_frames=9, flow_dir=None, require_flow=False)
    with pytest.raises(DataFileError, match="flow_dir"):
        VideoFrames(videos, flow_dir=None)


def test_flow_estimation_for_dataset_videos_writes_every_flow_the_clips_need(data_dir):
    flows = data_dir / "flow" / "videos"
    written = sorted(str(p.relative_to(flows)) for p in flows.rglob("*.png"))
    expected = [f"drive/{t:06d}_{t - 1:06d}.png" for t in range(1, 8)]
    expected += [f"walk/{t:06d}_{t - 1:06d}.png" for t in range(1, 5)]
    assert written == expected
    base = [f"paths.data_dir={data_dir}", "dataset=videos", "flow.workers=0", "flow.progress=false", *SIZE]
    assert estimate(compose_config("estimate_flow", base)) == (0, 7 + 4 + 5)  # nothing left to do
    with pytest.raises(
        ConfigError, match=r"flow.split=val, but dataset=videos has none \(dataset.val is null\)"
    ):
        estimate(compose_config("estimate_flow", [*base, "flow.split=val"]))


def test_videos_config_has_synthia_source_and_optional_cityscapes_val(data_dir, tmp_path):
    base = [f"paths.data_dir={data_dir}", "dataset=videos", *SIZE]
    cfg = compose_config("train", base)
    synthia = compose_config("train", [f"paths.data_dir={data_dir}", "dataset=synthia", SIZE[1]])
    assert (
        cfg.dataset.source == synthia.dataset.source
        and cfg.dataset.class_names == synthia.dataset.class_names
    )
    assert cfg.dataset.val is None and not {"split", "space"} & set(cfg.dataset.target.dataset)
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    assert datamodule.val_names == [] and datamodule.val_dataloader() == []
    assert isinstance(datamodule.datasets["target"].dataset, VideoFrames)
    root = cityscapes_val(tmp_path / "labelled")
    labelled = compose_config("train", [*base, "dataset/val=cityscapes", f"dataset.val.root={root}"])
    reader = instantiate(labelled.dataset.val, require_flow=False)
    assert isinstance(reader, CityscapesSeq) and reader.labelled and len(reader) == 1
    assert build_datamodule(labelled).val_names == ["target"]


def test_train_command_on_own_target_videos_without_labelled_target_frames(data_dir, tmp_path):
    out = tmp_path / "run"
    proc = run(
        "dastc.train",
        "dataset=videos",
        "backbone=accel",
        "backbone.depth=18",
        f"paths.data_dir={data_dir}",
        f"paths.output_dir={out}",
        "trainer.max_steps=2",
        "dataset.schedule.val_every=2",
        "dataset.num_workers=0",
        "dataset.pin_memory=false",
        "dataset.val=null",
        "backbone.pretrained=null",
        "dataset.schedule.two_stage=false",  # DA-STC alone, not TPS first
        "trainer.log_every_n_steps=1",
        "callbacks=none",
        *SIZE,
        cwd=tmp_path,
    )
    assert (
        "There is no labelled target validation set (dataset.val is null), so no target mIoU" in proc.stdout
    )
    assert "Target mIoU" not in proc.stdout and "Total length of `list`" not in proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["step"] == 2 and metrics["metrics"] == {} and (out / "checkpoints" / "last.ckpt").is_file()
    assert "train/loss" in (out / "csv" / "metrics.csv").read_text().splitlines()[0]


def test_predict_writes_an_h264_mp4_that_browsers_play(tmp_path):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (63, 127, 3), dtype=np.uint8) for _ in range(5)]  # odd sizes: padded
    write_videos(tmp_path, frames, fps=10)
    reader = imageio_ffmpeg.read_frames(str(tmp_path / "overlay.mp4"))
    meta = next(reader)
    assert meta["codec"] == "h264" and meta["pix_fmt"].startswith("yuv420p") and meta["size"] == (128, 64)
    assert sum(1 for _ in reader) == 5
    probe = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(tmp_path / "overlay.mp4")],
        capture_output=True,
        text=True,
    )
    assert "Video: h264" in probe.stderr
    from PIL import Image

    assert Image.open(tmp_path / "overlay.gif").n_frames == 5
