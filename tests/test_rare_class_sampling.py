"""Rare class sampling (dataset.rcs; DAFormer, Hoyer et al. CVPR 2022): the class probabilities, the clips it
draws, its rebuildability from the sample index, the class index's pixel counts it reads and the CLI."""

import json

import numpy as np
import pytest
import torch
from real_fixtures import SYNTHIA_TINY, write_synthia_benchmark
from test_config_validation import train_cli as run_training
from test_datamodule import Numbers

from dastc.build import build_datamodule
from dastc.data import class_index
from dastc.data.class_index import build_class_index, fingerprint, load_or_build_class_index
from dastc.data.datamodule import PairedClips
from dastc.data.rare_class_sampling import RareClassSampling, class_probabilities
from dastc.errors import ConfigError, DataFileError
from dastc.schema import validate_config

# Hand-made current frames: pixels of each class per clip (255 pixels besides, which never count).
# Class 3 has no pixel anywhere; clip 2 holds 5 pixels of class 2, fewer than MIN_PIXELS.
FRAMES = [{0: 500, 1: 40}, {0: 600}, {0: 300, 2: 5}, {1: 60, 2: 30}, {0: 400}]
NUM_CLASSES, MIN_PIXELS, T = 4, 10, 0.5


class Frames(torch.utils.data.Dataset):
    """Clips whose current labels hold FRAMES' pixel counts, then ignored pixels."""

    def __init__(self, frames=FRAMES):
        self.frames = frames

    def __len__(self):
        return len(self.frames)

    def current_label(self, i):
        pixels = [np.full(n, c, np.uint8) for c, n in self.frames[i].items()]
        return np.concatenate([*pixels, np.full(7, 255, np.uint8)])

    def __getitem__(self, i):
        return i


def daformer_p(totals, temperature):
    """P(c) = exp((1 - f_c) / T) / sum_c' exp((1 - f_c') / T) over the classes with pixels, written out."""
    totals = np.asarray(totals, dtype=float)
    present = totals > 0
    f = totals / totals.sum()
    weights = np.where(present, np.exp((1 - f) / temperature), 0.0)
    return weights / weights.sum()


def test_probabilities_are_daformers_formula_and_classes_without_pixels_get_none():
    p = class_probabilities([900, 90, 10, 0], temperature=0.01)
    e = np.exp([(1 - 0.9) / 0.01, (1 - 0.09) / 0.01, (1 - 0.01) / 0.01])  # f_c = 0.9, 0.09, 0.01
    np.testing.assert_allclose(p, [*(e / e.sum()), 0.0], rtol=1e-12)
    assert p[2] / p[1] == pytest.approx(np.exp(8.0))  # (0.99 - 0.91) / 0.01
    np.testing.assert_allclose(
        class_probabilities([900, 90, 10, 0], 1e6), [1 / 3, 1 / 3, 1 / 3, 0], atol=1e-6
    )
    with pytest.raises(DataFileError, match=r"dataset\.rcs"):
        class_probabilities([0, 0, 0], 0.01)


def test_min_pixels_decides_which_clips_hold_a_class():
    index = build_class_index(Frames(), NUM_CLASSES, progress=False)
    assert index.clips == {0: [0, 1, 2, 4], 1: [0, 3], 2: [2, 3], 3: []}
    assert index.pixels == {0: [500, 600, 300, 400], 1: [40, 60], 2: [5, 30], 3: []}
    assert index.totals().tolist() == [1800, 100, 35, 0]  # the ignored pixels never count
    assert RareClassSampling(index, T, min_pixels=10).clips == [[0, 1, 2, 4], [0, 3], [3], []]
    assert RareClassSampling(index, T, min_pixels=5).clips[2] == [2, 3]  # 5 pixels hold at min_pixels=5
    assert RareClassSampling(index, T, min_pixels=50).clips == [[0, 1, 2, 4], [3], [], []]
    with pytest.raises(DataFileError, match=r"dataset\.rcs\.min_pixels"):
        RareClassSampling(index, T, min_pixels=1000)  # no clip holds any class with that many pixels


def test_a_class_no_clip_holds_enough_of_gets_no_probability_but_its_pixels_still_count():
    index = build_class_index(Frames(), NUM_CLASSES, progress=False)
    p = RareClassSampling(index, T, min_pixels=50).probabilities
    f = np.array([1800, 100, 35]) / 1935
    e = np.exp((1 - f[:2]) / T)  # class 2 has no clip with 50 pixels: out of the draw, in the frequencies
    np.testing.assert_allclose(p, [*(e / e.sum()), 0, 0], rtol=1e-12)


def test_drawn_clips_follow_the_class_mixture():
    rcs = RareClassSampling(build_class_index(Frames(), NUM_CLASSES, progress=False), T, MIN_PIXELS, seed=5)
    p = daformer_p([1800, 100, 35, 0], T)
    np.testing.assert_allclose(rcs.probabilities, p, rtol=1e-12)
    # Holders at 10 pixels: class 0 clips 0, 1, 2, 4; class 1 clips 0, 3; class 2 clip 3 (clip 2 has only 5).
    expected = np.array([p[0] / 4 + p[1] / 2, p[0] / 4, p[0] / 4, p[1] / 2 + p[2], p[0] / 4])
    n = 20_000
    counts = np.bincount([rcs(g) for g in range(n)], minlength=len(FRAMES))
    sigma = np.sqrt(n * expected * (1 - expected))
    assert np.all(np.abs(counts - n * expected) < 4 * sigma), (counts, n * expected)
    # The share of draws holding each class (at 10 pixels) against its mixture probability.
    holds = {0: [0, 1, 2, 4], 1: [0, 3], 2: [3]}
    for clips in holds.values():
        share = expected[clips].sum()
        assert abs(counts[clips].sum() - n * share) < 4 * np.sqrt(n * share * (1 - share))
    assert counts[3] > 4 * counts[1]  # the clip of the rarest classes comes far more often than a road clip


def test_each_sample_is_rebuilt_from_its_index_and_the_target_stream_is_unchanged():
    index = build_class_index(Frames(), NUM_CLASSES, progress=False)
    rcs = RareClassSampling(index, T, MIN_PIXELS, seed=3)
    pairs = PairedClips(Numbers(5), Numbers(7), seed=3, rcs=rcs)
    forward = [pairs[g] for g in range(60)]
    again = PairedClips(Numbers(5), Numbers(7), seed=3, rcs=RareClassSampling(index, T, MIN_PIXELS, seed=3))
    backward = {g: again[g] for g in reversed(range(60))}  # another object, the other order
    assert forward == [backward[g] for g in range(60)]
    plain = PairedClips(Numbers(5), Numbers(7), seed=3)
    assert [s["target"] for s in forward] == [plain[g]["target"] for g in range(60)]
    assert [s["source"] for s in forward] != [plain[g]["source"] for g in range(60)]
    other = RareClassSampling(index, T, MIN_PIXELS, seed=4)
    assert [rcs(g) for g in range(60)] != [other(g) for g in range(60)]


def test_an_old_cache_without_pixel_counts_is_rebuilt(tmp_path, monkeypatch):
    dataset, path = Frames(), tmp_path / "index.json"
    old = {"fingerprint": fingerprint(dataset), "num_classes": NUM_CLASSES, "classes": {"0": [1], "1": [0]}}
    path.write_text(json.dumps(old))  # format 1, as the previous version wrote it: same dataset, no counts
    index = load_or_build_class_index(dataset, path, NUM_CLASSES, progress=False)
    assert index.clips[0] == [0, 1, 2, 4] and index.pixels[1] == [40, 60]
    stored = json.loads(path.read_text())
    assert stored["format"] == 2 and stored["pixels"]["2"] == [5, 30]
    monkeypatch.setattr(class_index, "build_class_index", lambda *a, **k: pytest.fail("rebuilt"))
    assert load_or_build_class_index(dataset, path, NUM_CLASSES) == index  # the new format is read back


def test_the_datamodule_draws_sources_by_rcs_and_scoring_leaves_it_out(make_cfg, tmp_path, caplog):
    cfg = make_cfg(
        "method=source_only", "dataset.rcs.enabled=true", f"dataset.class_index={tmp_path}/idx.json"
    )
    dm = build_datamodule(cfg)
    dm.prepare_data()
    assert json.loads((tmp_path / "idx.json").read_text())["format"] == 2  # built in prepare_data
    with caplog.at_level("INFO", logger="dastc.data.datamodule"):
        dm.setup("fit")
    assert "Rare class sampling (T=0.01, min_pixels=25), P(class): person " in caplog.text
    pairs = dm.train_dataloader().dataset
    assert pairs.rcs is dm.rcs and [pairs.indices(g)[0] for g in range(20)] == [dm.rcs(g) for g in range(20)]
    labels = dm.datasets["source"].current_label
    drawn = [pairs.indices(g)[0] for g in range(200)]
    # Person, the toy's rarest class, has P 0.77: most draws hold >= 25 px of it.
    assert np.mean([(labels(i) == 7).sum() >= 25 for i in drawn]) > 0.85  # 120 of 180 clips: 0.67 uniformly
    scoring = build_datamodule(cfg, training=False)
    scoring.prepare_data()
    scoring.setup("validate")
    assert scoring.rcs is None


@pytest.mark.parametrize("override", ["dataset.rcs.temperature=0", "dataset.rcs.min_pixels=-1"])
def test_bad_rcs_values_are_named(make_cfg, override):
    with pytest.raises(ConfigError, match=f"^{override} is not allowed"):
        validate_config(make_cfg(override))


def train_cli(tmp_path, *overrides):
    """A CLI training run that must succeed; its output."""
    proc = run_training(tmp_path, *overrides)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["step"] > 0
    return proc.stdout + proc.stderr


def test_toy_training_with_rcs_through_the_cli(data_dir, tmp_path):
    out = train_cli(
        tmp_path,
        f"paths.data_dir={data_dir}",
        "dataset.rcs.enabled=true",
        f"dataset.class_index={tmp_path}/toy.json",
        "trainer.max_steps=2",
        "dataset.batch_size=2",
        "dataset.schedule.warmup_steps=1",
        "dataset.schedule.val_every=2",
        "trainer.limit_val_batches=1",
        "callbacks=none",
    )
    assert "Rare class sampling (T=0.01, min_pixels=25), P(class): person" in out
    assert json.loads((tmp_path / "toy.json").read_text())["format"] == 2


def test_synthia_training_with_rcs_through_the_cli(tmp_path):
    data_dir = write_synthia_benchmark(tmp_path / "data")
    out = train_cli(
        tmp_path,
        "dataset=synthia",
        "backbone=accel",
        "backbone.depth=18",
        "backbone.pretrained=null",
        "method=source_only",
        f"paths.data_dir={data_dir}",
        "dataset.rcs.enabled=true",
        "dataset.rcs.min_pixels=64",  # the fixture's frames hold 8x8 blocks
        "trainer.max_steps=1",
        "dataset.schedule.val_every=1",
        "callbacks=none",
        "dataset.num_workers=0",
        "dataset.pin_memory=false",
        *SYNTHIA_TINY,
    )
    assert "Rare class sampling (T=0.01, min_pixels=64), P(class):" in out
    assert json.loads((data_dir / "index" / "synthia_source_classes.json").read_text())["format"] == 2
