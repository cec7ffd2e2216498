import hashlib
import json

import numpy as np
import pytest
import torch

from dastc.data.toy import ToyClips, ToySpec, ensure_toy_benchmark
from dastc.data.toy_scenes import CAR, PERSON, STYLES, make_scene, render
from dastc.errors import DatasetNotFoundError
from dastc.flow.warp import warp

SMALL = dict(
    frames_per_sequence=4,
    source_train_sequences=2,
    source_val_sequences=1,
    target_train_sequences=2,
    target_val_sequences=1,
)


def _digest(root):
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_generation_is_deterministic_and_small(tmp_path):
    a = ensure_toy_benchmark(tmp_path / "a" / "toy", **SMALL)
    b = ensure_toy_benchmark(tmp_path / "b" / "toy", **SMALL)
    assert _digest(a) == _digest(b)
    assert json.loads((a / "spec.json").read_text())["frames_per_sequence"] == 4


def test_default_benchmark_is_a_few_megabytes(data_dir):
    size = sum(p.stat().st_size for p in (data_dir / "toy").rglob("*") if p.is_file())
    assert size < 5 * 2**20


def test_target_training_clips_carry_no_labels(data_dir):
    toy = data_dir / "toy"
    assert not list((toy / "target" / "train").rglob("labels"))
    assert list((toy / "target" / "val").rglob("labels"))
    clip = ToyClips(toy, "target", "train", 3)[0]
    assert "labels" not in clip


def test_a_different_spec_regenerates_and_generate_false_fails_clearly(tmp_path):
    root = ensure_toy_benchmark(tmp_path / "toy", **SMALL)
    ensure_toy_benchmark(root, **{**SMALL, "frames_per_sequence": 5})
    assert len(list((root / "source" / "train" / "000" / "frames").iterdir())) == 5
    with pytest.raises(DatasetNotFoundError, match="dataset.prepare.generate=true"):
        ensure_toy_benchmark(tmp_path / "elsewhere" / "toy", generate=False)


@pytest.mark.parametrize("domain", ["source", "target"])
def test_warping_frame_t_minus_1_by_the_flow_reproduces_frame_t(domain):
    spec = ToySpec()
    scene = make_scene(np.random.default_rng(3), spec.height, spec.width, spec.frames_per_sequence)
    noise = np.random.default_rng(0)
    prev, cur = (render(scene, t, STYLES[domain], noise) for t in (4, 5))
    flow = torch.from_numpy(cur.flow).permute(2, 0, 1)[None].double()
    # Labels: exact everywhere the flow stays inside the image and the point was not occluded at t-1.
    warped_label = warp(torch.from_numpy(prev.label)[None, None].double(), flow, mode="nearest")[0, 0]
    label = torch.from_numpy(cur.label).double()
    moving = (flow[0, 0] != 0) & torch.isin(label, torch.tensor([float(CAR), float(PERSON)]))
    inside = (torch.arange(spec.width) + flow[0, 0]).ge(0) & (torch.arange(spec.width) + flow[0, 0]).le(
        spec.width - 1
    )
    agree = (warped_label == label)[moving & inside].float().mean()
    assert moving.sum() > 20 and agree > 0.97  # what disagrees is disocclusion at object edges
    if domain == "source":  # flat shading: colours follow the labels exactly
        image_prev = torch.from_numpy(prev.image).permute(2, 0, 1)[None].double()
        warped = warp(image_prev, flow, mode="nearest")[0].permute(1, 2, 0)
        same = (warped == torch.from_numpy(cur.image).double()).all(-1)
        assert same[moving & inside].float().mean() > 0.97


def test_the_flow_marks_moving_objects():
    scene = make_scene(np.random.default_rng(5), 64, 128, 16)
    frame = render(scene, 1, STYLES["source"], np.random.default_rng(0))
    car_flow = frame.flow[..., 0][frame.label == CAR]
    sky_flow = frame.flow[..., 0][frame.label == 3]
    assert np.abs(car_flow).max() > 0 and np.all(sky_flow == 0) and np.all(frame.flow[..., 1] == 0)


@pytest.mark.parametrize(
    "domain,split,num_frames",
    [("source", "train", 2), ("target", "train", 3), ("target", "val", 2), ("source", "val", 2)],
)
def test_clip_contract(data_dir, domain, split, num_frames):
    ds = ToyClips(data_dir / "toy", domain, split, num_frames)
    clip = ds[len(ds) - 1]
    t, h, w = num_frames, 64, 128
    assert clip["frames"].shape == (t, 3, h, w) and clip["frames"].dtype == torch.float32
    assert 0.0 <= clip["frames"].min() and clip["frames"].max() <= 1.0
    assert clip["flow"].shape == (t - 1, 2, h, w) and clip["flow"].dtype == torch.float32
    assert clip["meta"]["frame_ids"] == sorted(clip["meta"]["frame_ids"])
    assert len(clip["meta"]["paths"]) == t
    if (domain, split) == ("target", "train"):
        return
    labels = clip["labels"]
    assert labels.shape == (t, h, w) and labels.dtype == torch.int64
    assert set(labels[-1].unique().tolist()) <= set(range(8))
    if domain == "target":  # scored on the current frame only
        assert (labels[:-1] == 255).all()
    else:
        assert (labels < 8).all()
