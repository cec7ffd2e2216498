import shutil
from collections import Counter

import cv2
import numpy as np
import pytest
import torch

from dastc.build import build_datamodule
from dastc.data import class_index
from dastc.data.class_index import load_or_build_class_index
from dastc.data.clip import collate_clips
from dastc.data.datamodule import PairedClips, StreamSampler
from dastc.data.histogram import match_clip_histograms
from dastc.data.toy import ToyClips
from dastc.errors import DataFileError


class Numbers(torch.utils.data.Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return i


def test_paired_stream_shuffles_independently_and_covers_both_sets_evenly():
    pairs = PairedClips(Numbers(3), Numbers(5), seed=0)
    assert len(pairs) == 5
    samples = [pairs[g] for g in range(15)]  # 5 passes of the source, 3 of the target
    assert Counter(s["source"] for s in samples) == {0: 5, 1: 5, 2: 5}
    assert Counter(s["target"] for s in samples) == {i: 3 for i in range(5)}
    for start in range(0, 15, 3):  # every pass over the smaller set is a permutation of it
        assert sorted(s["source"] for s in samples[start : start + 3]) == [0, 1, 2]
    assert [pairs[g] for g in range(15)] == samples  # rebuilt from the index alone
    other = PairedClips(Numbers(3), Numbers(5), seed=1)
    assert [other[g] for g in range(15)] != samples


def test_stream_sampler_starts_where_a_run_left_off_and_continues_across_passes():
    sampler = StreamSampler(start=6, length=4)
    assert len(sampler) == 4
    assert list(sampler) == [6, 7, 8, 9]
    assert list(sampler) == [10, 11, 12, 13]  # a second pass continues the stream, never repeats it


def test_stream_sampler_shards_each_step_into_disjoint_blocks_like_one_process_with_the_global_batch():
    ranks = [StreamSampler(start=4, length=12, batch_size=2, num_replicas=3, rank=r) for r in range(3)]
    assert [len(r) for r in ranks] == [4, 4, 4]
    shards = [list(r) for r in ranks]
    assert shards == [[4, 5, 10, 11], [6, 7, 12, 13], [8, 9, 14, 15]]
    single = list(StreamSampler(start=4, length=12, batch_size=6))
    for step in range(2):  # the union of the ranks' batches of a step is the single process's batch
        assert (
            sorted(i for shard in shards for i in shard[2 * step : 2 * step + 2])
            == single[6 * step : 6 * step + 6]
        )
    assert list(ranks[1]) == [18, 19, 24, 25]  # the next pass continues after all ranks' samples
    assert list(StreamSampler(start=0, length=7, batch_size=3)) == list(
        range(6)
    )  # an incomplete step is left out


def test_collate_refuses_mixed_label_presence():
    a = {"frames": torch.zeros(2, 3, 4, 4), "labels": torch.zeros(2, 4, 4, dtype=torch.long), "meta": {}}
    b = {"frames": torch.zeros(2, 3, 4, 4), "meta": {}}
    with pytest.raises(ValueError, match="labels"):
        collate_clips([a, b])


def test_datamodule_batches_follow_the_clip_contract(make_cfg):
    dm = build_datamodule(make_cfg("dataset.batch_size=3", "dataset.val_batch_size=4"))
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    src, tgt = batch["source"], batch["target"]
    assert src["frames"].shape == (3, 2, 3, 64, 128) and src["frames"].dtype == torch.float32
    assert src["labels"].shape == (3, 2, 64, 128) and src["labels"].dtype == torch.int64
    assert src["flow"].shape == (3, 1, 2, 64, 128)
    assert tgt["frames"].shape == (3, 3, 3, 64, 128) and tgt["flow"].shape == (3, 2, 2, 64, 128)
    assert "labels" not in tgt and len(tgt["meta"]) == 3 and tgt["meta"][0]["domain"] == "target"
    val_loaders = dm.val_dataloader()
    assert [len(loader.dataset) for loader in val_loaders] == [90, 45]
    val = next(iter(val_loaders[0]))
    assert val["frames"].shape == (4, 2, 3, 64, 128) and val["labels"].shape == (4, 2, 64, 128)
    assert dm.val_names == ["target", "source"] and dm.num_classes == len(dm.class_names) == 8
    # Each stream reads its own split: training never sees the held-out source clips.
    assert [len(dm.datasets[k]) for k in ("source", "target", "val", "val_source")] == [180, 168, 90, 45]
    assert all("/source/train/" in m["paths"][0] for m in src["meta"])
    assert all("/target/train/" in m["paths"][0] for m in tgt["meta"])


def test_datamodule_workers_give_the_same_batches(make_cfg):
    batches = []
    for workers in (0, 2):
        dm = build_datamodule(make_cfg("dataset.batch_size=2", f"dataset.num_workers={workers}"))
        dm.prepare_data()
        dm.setup("fit")
        batches.append(next(iter(dm.train_dataloader())))
    torch.testing.assert_close(batches[0]["source"]["frames"], batches[1]["source"]["frames"])
    assert batches[0]["target"]["meta"] == batches[1]["target"]["meta"]


@pytest.fixture
def broken_toy(data_dir, tmp_path):
    """A private copy of a toy split to damage."""
    root = tmp_path / "toy"
    shutil.copytree(data_dir / "toy" / "source" / "val", root / "source" / "val")
    return root, root / "source" / "val" / "000"


def test_missing_frame_is_named(broken_toy):
    root, seq = broken_toy
    (seq / "frames" / "0003.png").unlink()
    ds = ToyClips(root, "source", "val", 2)
    with pytest.raises(DataFileError, match=r"frame .*0003.png is missing"):
        ds[2]


def test_corrupt_frame_is_named(broken_toy):
    root, seq = broken_toy
    path = seq / "frames" / "0002.png"
    path.write_bytes(path.read_bytes()[:40])  # truncated
    with pytest.raises(DataFileError, match=r"0002.png is truncated or not a readable image"):
        ToyClips(root, "source", "val", 2)[1]


def test_label_of_the_wrong_size_is_named(broken_toy):
    root, seq = broken_toy
    cv2.imwrite(str(seq / "labels" / "0002.png"), np.zeros((32, 64), np.uint8))
    with pytest.raises(DataFileError, match=r"label .*0002.png is 64x32 but its frame is 128x64"):
        ToyClips(root, "source", "val", 2)[1]


def test_label_with_unknown_class_ids_is_named(broken_toy):
    root, seq = broken_toy
    cv2.imwrite(str(seq / "labels" / "0002.png"), np.full((64, 128), 17, np.uint8))
    with pytest.raises(DataFileError, match=r"0002.png holds values \[17\] outside the 8 class ids"):
        ToyClips(root, "source", "val", 2)[1]


def test_flow_of_the_wrong_size_is_named(broken_toy):
    root, seq = broken_toy
    from dastc.flow.io import write_flow_png

    write_flow_png(seq / "flow" / "0002.png", np.zeros((10, 10, 2)))
    with pytest.raises(DataFileError, match=r"flow .*0002.png is 10x10"):
        ToyClips(root, "source", "val", 2)[1]


def test_class_index_lists_the_clips_holding_each_class_and_is_cached(data_dir, tmp_path, monkeypatch):
    dataset = ToyClips(data_dir / "toy", "source", "val", num_frames=2)
    path = tmp_path / "index.json"
    index = load_or_build_class_index(dataset, path, num_classes=8, progress=False)
    for i in range(len(dataset)):
        present = set(np.unique(dataset[i]["labels"][-1].numpy()).tolist()) - {255}
        assert {c for c, clips in index.clips.items() if i in clips} == present
    monkeypatch.setattr(class_index, "build_class_index", lambda *a, **k: pytest.fail("rebuilt"))
    assert load_or_build_class_index(dataset, path, num_classes=8) == index  # read from the cache
    monkeypatch.undo()
    path.write_text("{not json")  # a damaged cache is rebuilt
    assert load_or_build_class_index(dataset, path, num_classes=8, progress=False) == index
    other = ToyClips(data_dir / "toy", "source", "val", num_frames=3)  # another dataset: rebuilt
    assert load_or_build_class_index(other, path, num_classes=8, progress=False) != index


def test_dastc_batches_carry_rare_class_clips_that_hold_their_class(make_cfg, tmp_path):
    cfg = make_cfg("method=dastc", "dataset.batch_size=3", f"dataset.class_index={tmp_path}/idx.json")
    dm = build_datamodule(cfg)
    dm.prepare_data()
    dm.setup("fit")
    assert (tmp_path / "idx.json").is_file()
    batch = next(iter(dm.train_dataloader()))
    rare = batch["rare"]
    assert rare["classes"].shape == (3, 2) and len(rare["clips"]) == 2
    assert set(rare["classes"].flatten().tolist()) <= {5, 7}  # the toy long-tail classes
    for k, clips in enumerate(rare["clips"]):
        assert clips["frames"].shape == (3, 2, 3, 64, 128)
        for b in range(3):
            assert (clips["labels"][b, -1] == rare["classes"][b, k]).any()
    off = build_datamodule(make_cfg("method=dastc", "method.fusion.rare_class_paste=false"))
    off.prepare_data()
    off.setup("fit")
    assert "rare" not in next(iter(off.train_dataloader()))


def test_histogram_matching_gives_source_frames_the_target_colours(make_cfg):
    frames = torch.rand(2, 3, 16, 16) * 0.5  # dark source clip
    reference = 0.5 + torch.rand(3, 8, 8) * 0.5  # bright target frame of another size
    matched = match_clip_histograms(frames, reference)
    assert matched.shape == frames.shape and matched.dtype == torch.float32
    for c in range(3):  # each channel's distribution now follows the reference's
        assert abs(matched[:, c].mean() - reference[c].mean()) < 0.03
        assert matched[:, c].min() >= reference[c].min() - 1 / 255
    order = frames[0, 0].flatten().argsort()  # a monotone mapping: the order of pixel values is kept
    assert (matched[0, 0].flatten()[order].diff() >= 0).all()
    dm = build_datamodule(make_cfg("method=tps", "method.hist_match=true", "dataset.batch_size=2"))
    dm.prepare_data()
    dm.setup("fit")
    pair = dm.train_dataloader().dataset[0]
    raw = dm.datasets["source"][dm.train_dataloader().dataset.indices(0)[0]]["frames"]
    expected = match_clip_histograms(raw, pair["target"]["frames"][-1])
    torch.testing.assert_close(pair["source"]["frames"], expected)


def test_histogram_matching_maps_each_level_to_the_reference_level_of_equal_rank():
    # Hand case: a source channel half 0 and half 255 against a reference half 100 and half 200 (another size):
    # matching the cumulative histograms sends the lower half to 100 and the upper half to 200.
    frames = torch.zeros(1, 3, 4, 4)
    frames[..., 2:, :] = 1.0
    reference = torch.full((3, 2, 8), 100 / 255)
    reference[:, 1] = 200 / 255
    matched = match_clip_histograms(frames, reference).mul(255).round()
    assert (matched[..., :2, :] == 100).all() and (matched[..., 2:, :] == 200).all()


class Draws(torch.utils.data.Dataset):
    """Clips that say which augmentation draw produced them."""

    def __len__(self):
        return 3

    def sample(self, index, pass_number):
        return {"index": index, "draw": pass_number}


def test_each_pass_over_a_dataset_draws_a_new_augmentation():
    pairs = PairedClips(Draws(), Numbers(5), seed=0)
    first, second = pairs[1]["source"], pairs[1 + 3]["source"]  # the same position of passes 0 and 1
    assert (first["draw"], second["draw"]) == (0, 1)
    assert {pairs[g]["source"]["index"] for g in range(3)} == {0, 1, 2}


def test_histogram_matching_is_off_for_source_only_and_follows_the_method(make_cfg):
    assert not build_datamodule(make_cfg("method=source_only")).hist_match  # the plain baseline
    assert build_datamodule(make_cfg("method=tps")).hist_match  # the toy's TPS/DA-STC recipe
    assert not build_datamodule(make_cfg("method=dastc", "method.hist_match=false")).hist_match
