"""The readers of SYNTHIA-Seq, VIPER and Cityscapes-Seq on tiny copies written in each dataset's on-disk encoding."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from real_fixtures import (
    CS_H,
    CS_SIZE,
    CS_W,
    SY_CROP,
    SY_H,
    SY_W,
    VP_H,
    VP_IDS,
    VP_W,
    cityscapes_val,
    make_cityscapes,
    make_synthia,
    make_viper,
    synthia_flows,
    uniform_flow,
    viper_png,
    write_published_flow,
)

from dastc.data.cityscapes_seq import CityscapesSeq, annotated_frames_from_sequences
from dastc.data.class_spaces import (
    CITYSCAPES_COLOURS,
    GTA5,
    SYNTHIA,
    SYNTHIA_IMAGE,
    VIPER,
    apply_lookup,
    space,
)
from dastc.data.clip import collate_clips
from dastc.data.synthia_seq import LAYOUTS, SynthiaSeq
from dastc.data.viper import VIPER_COLOURS, Viper, read_viper_ids, remove_ego_vehicle
from dastc.errors import DataFileError, DatasetNotFoundError
from dastc.flow.io import write_flow_png

# cityscapesscripts/helpers/labels.py for ids 0..33: (name, official 19-class trainId, colour).
CITYSCAPES_LABELS = {
    0: ("unlabeled", 255, (0, 0, 0)),
    1: ("ego vehicle", 255, (0, 0, 0)),
    2: ("rectification border", 255, (0, 0, 0)),
    3: ("out of roi", 255, (0, 0, 0)),
    4: ("static", 255, (0, 0, 0)),
    5: ("dynamic", 255, (111, 74, 0)),
    6: ("ground", 255, (81, 0, 81)),
    7: ("road", 0, (128, 64, 128)),
    8: ("sidewalk", 1, (244, 35, 232)),
    9: ("parking", 255, (250, 170, 160)),
    10: ("rail track", 255, (230, 150, 140)),
    11: ("building", 2, (70, 70, 70)),
    12: ("wall", 3, (102, 102, 156)),
    13: ("fence", 4, (190, 153, 153)),
    14: ("guard rail", 255, (180, 165, 180)),
    15: ("bridge", 255, (150, 100, 100)),
    16: ("tunnel", 255, (150, 120, 90)),
    17: ("pole", 5, (153, 153, 153)),
    18: ("polegroup", 255, (153, 153, 153)),
    19: ("traffic light", 6, (250, 170, 30)),
    20: ("traffic sign", 7, (220, 220, 0)),
    21: ("vegetation", 8, (107, 142, 35)),
    22: ("terrain", 9, (152, 251, 152)),
    23: ("sky", 10, (70, 130, 180)),
    24: ("person", 11, (220, 20, 60)),
    25: ("rider", 12, (255, 0, 0)),
    26: ("car", 13, (0, 0, 142)),
    27: ("truck", 14, (0, 0, 70)),
    28: ("bus", 15, (0, 60, 100)),
    29: ("caravan", 255, (0, 0, 90)),
    30: ("trailer", 255, (0, 0, 110)),
    31: ("train", 16, (0, 80, 100)),
    32: ("motorcycle", 17, (0, 0, 230)),
    33: ("bicycle", 18, (119, 11, 32)),
}

SYNTHIA_CMD = "python -m dastc.flow.estimate dataset=synthia"
VIPER_CMD = "python -m dastc.flow.estimate dataset=viper"


# ---------------------------------------------------------------------------------------------- class spaces
def test_class_spaces_as_method_md_lists_them():
    assert SYNTHIA.num_classes == 12 and VIPER.num_classes == 15
    assert SYNTHIA.eval_classes == (0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11)  # fence (3) trained, not reported
    assert VIPER.eval_classes == tuple(range(15))
    assert SYNTHIA.long_tail_classes == (3, 4, 5, 6, 10)
    assert VIPER.long_tail_classes == (3, 4, 5, 7, 13, 14)
    assert [SYNTHIA.class_names[c] for c in SYNTHIA.long_tail_classes] == [
        "fence", "pole", "traffic light", "traffic sign", "rider",
    ]  # fmt: skip
    for table in (SYNTHIA.cityscapes_lut, SYNTHIA.source_lut, VIPER.cityscapes_lut, VIPER.source_lut):
        assert table.dtype == np.uint8 and table.shape == (256,) and not table.flags.writeable
    assert space("synthia") is SYNTHIA and space(VIPER) is VIPER
    with pytest.raises(ValueError, match="known: gta5, synthia, synthia_image, viper"):
        space("cityscapes")


@pytest.mark.parametrize("cs", [SYNTHIA, VIPER, GTA5, SYNTHIA_IMAGE], ids=lambda s: s.name)
def test_cityscapes_maps_agree_with_the_official_label_table(cs):
    names = {name: train for train, name in enumerate(cs.class_names)}
    if cs is VIPER:
        names["rider"] = names["person"]  # merged: VIPER has no rider class (docs/benchmarks.md, Class maps)
    for label_id, (name, official_train_id, colour) in CITYSCAPES_LABELS.items():
        assert cs.cityscapes_lut[label_id] == names.get(name, 255), (label_id, name)
        if official_train_id == 255:  # what Cityscapes ignores, we ignore too
            assert cs.cityscapes_lut[label_id] == 255
        if name in cs.class_names:
            assert cs.palette[cs.class_names.index(name)] == colour == CITYSCAPES_COLOURS[name]
    assert (cs.cityscapes_lut[34:] == 255).all()
    assert sorted(set(cs.cityscapes_lut[:34]) - {255}) == list(range(cs.num_classes))
    if cs is GTA5:  # the 19-class space is Cityscapes' own: every train id as the official table has it
        for label_id, (_, official_train_id, _) in CITYSCAPES_LABELS.items():
            assert cs.cityscapes_lut[label_id] == official_train_id, label_id


def test_source_maps_by_hand():
    synthia = {3: 0, 4: 1, 2: 2, 5: 3, 7: 4, 15: 5, 9: 6, 6: 7, 1: 8, 10: 9, 11: 10, 8: 11}
    viper = {3: 0, 4: 1, 9: 2, 11: 3, 13: 4, 14: 5, 7: 6, 8: 6, 6: 7, 2: 8, 20: 9, 24: 10, 27: 11, 26: 12}
    viper |= {23: 13, 22: 14}
    for cs, expected in ((SYNTHIA, synthia), (VIPER, viper)):
        assert {i: int(t) for i, t in enumerate(cs.source_lut) if t != 255} == expected
    raw = np.array([[3, 300], [65535, 8]], dtype=np.uint16)  # 16-bit values outside the table are ignored
    np.testing.assert_array_equal(apply_lookup(SYNTHIA.source_lut, raw), [[0, 255], [255, 11]])


# ---------------------------------------------------------------------------------------------- SYNTHIA-Seq
SY_EXPECTED = np.full((SY_H - SY_CROP, SY_W), 0, dtype=np.int64)
SY_EXPECTED[0] = [255, 8, 2, 0, 1, 3, 7, 4]
SY_EXPECTED[1] = [11, 6, 9, 10, 255, 255, 255, 5]
SY_EXPECTED[2, :3] = [255, 255, 255]


@pytest.mark.parametrize("layout", ["flattened", "original"])
def test_synthia_decodes_both_layouts(tmp_path, layout):
    root = make_synthia(tmp_path / "SYNTHIA-SEQS-04-DAWN", layout)
    flow_dir = synthia_flows(tmp_path / "flow", [1, 2, 3])
    ds = SynthiaSeq(root, num_frames=2, flow_dir=flow_dir, crop_bottom=SY_CROP)
    assert ds.layout == layout and len(ds) == 3  # 000000 has no previous frame
    clip = ds[1]
    h = SY_H - SY_CROP
    assert clip["frames"].shape == (2, 3, h, SY_W) and clip["frames"].dtype == torch.float32
    assert clip["labels"].shape == (2, h, SY_W) and clip["labels"].dtype == torch.long
    assert clip["flow"].shape == (1, 2, h, SY_W) and clip["flow"].dtype == torch.float32
    # RGB order, oldest first, bottom rows cropped.
    torch.testing.assert_close(clip["frames"][:, 0, 0, 0], torch.tensor([10.0, 20.0]) / 255)
    assert (clip["frames"][:, 2] == 200 / 255).all() and (clip["frames"][:, 1] == 100 / 255).all()
    for k in range(2):
        np.testing.assert_array_equal(clip["labels"][k].numpy(), SY_EXPECTED)
    # Flow of frame 2 into frame 1, written at twice the size: vectors halved.
    assert torch.allclose(clip["flow"][0, 0], torch.tensor(2.0)) and torch.allclose(
        clip["flow"][0, 1], torch.tensor(-2.0)
    )
    meta = clip["meta"]
    assert meta["dataset"] == "synthia_seq" and meta["sequence"] == "SYNTHIA-SEQS-04-DAWN"
    assert meta["frame_ids"] == [1, 2]
    assert [Path(p).name for p in meta["paths"]] == ["000001.png", "000002.png"]
    assert Path(meta["paths"][0]).parent == root / LAYOUTS[layout][0]
    assert Path(meta["label_path"]) == root / LAYOUTS[layout][1] / "000002.png"


def test_synthia_partial_copy_gives_fewer_samples(tmp_path):
    # Frame 2 is missing and frame 0 has no label: only t=1 (label of frame 0 -> ignore) and t=4 remain.
    root = make_synthia(tmp_path / "s", frames=[0, 1, 3, 4], labels=[1, 3, 4])
    ds = SynthiaSeq(root, num_frames=2, require_flow=False, crop_bottom=SY_CROP)
    assert [s.frame_ids for s in ds.samples] == [(0, 1), (3, 4)]
    clip = ds[0]
    assert "flow" not in clip
    assert (clip["labels"][0] == 255).all()
    np.testing.assert_array_equal(clip["labels"][1].numpy(), SY_EXPECTED)


def test_synthia_no_clip_at_all_is_a_dataset_error(tmp_path):
    root = make_synthia(tmp_path / "s", frames=[0, 2], labels=[0, 2])
    with pytest.raises(DatasetNotFoundError, match="no clip of 2 consecutive frames"):
        SynthiaSeq(root, require_flow=False, crop_bottom=SY_CROP)


def test_synthia_missing_dataset_says_what_to_download(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        SynthiaSeq(tmp_path / "nowhere", require_flow=False)
    message = str(err.value)
    assert "SYNTHIA-SEQS-04-DAWN" in message and str(tmp_path / "nowhere") in message
    assert "RGB/Stereo_Left/Omni_F/000001.png" in message


def test_synthia_flow_needs_a_folder_or_an_explicit_opt_out(tmp_path):
    root = make_synthia(tmp_path / "s")
    with pytest.raises(DataFileError, match=SYNTHIA_CMD):
        SynthiaSeq(root, crop_bottom=SY_CROP)


def test_synthia_missing_flow_names_file_and_command(tmp_path):
    root = make_synthia(tmp_path / "s")
    flow_dir = synthia_flows(tmp_path / "flow", [1, 2])  # 000003 missing
    ds = SynthiaSeq(root, flow_dir=flow_dir, crop_bottom=SY_CROP)
    with pytest.raises(DataFileError) as err:
        ds[2]
    assert str(flow_dir / "000003.png") in str(err.value) and "000003_int16_x10.npy" in str(err.value)
    assert f"`{SYNTHIA_CMD}`" in str(err.value)


def test_synthia_reads_published_flow_and_resizes_per_axis(tmp_path):
    root = make_synthia(tmp_path / "s")
    flow_dir = tmp_path / "published"
    h = SY_H - SY_CROP
    # Twice the height, four times the width: x shrinks by 4, y by 2.
    write_published_flow(flow_dir / "000001_int16_x10.npy", uniform_flow(2 * h, 4 * SY_W, 4.0, -4.4))
    clip = SynthiaSeq(root, flow_dir=flow_dir, crop_bottom=SY_CROP)[0]
    assert clip["flow"].shape == (1, 2, h, SY_W)
    torch.testing.assert_close(clip["flow"][0, 0], torch.full((h, SY_W), 1.0))
    torch.testing.assert_close(clip["flow"][0, 1], torch.full((h, SY_W), -2.2))


def test_synthia_prefers_our_flow_over_the_published_one(tmp_path):
    root = make_synthia(tmp_path / "s")
    flow_dir = synthia_flows(tmp_path / "flow", [1])
    write_published_flow(flow_dir / "000001_int16_x10.npy", uniform_flow(SY_H - SY_CROP, SY_W, 9.0, 9.0))
    flow = SynthiaSeq(root, flow_dir=flow_dir, crop_bottom=SY_CROP)[0]["flow"]
    assert torch.allclose(flow[0, 0], torch.tensor(1.0))


def test_synthia_flow_on_uncropped_frames_is_cropped_not_squeezed(tmp_path):
    # The estimator reads the frame files: its flow covers all 10 rows; the bottom 3 must go, as in the frames.
    root = make_synthia(tmp_path / "s")
    flow = uniform_flow(SY_H, SY_W, 1.0, 0.5)
    flow[SY_H - SY_CROP :] = (40.0, 40.0)
    flow_dir = tmp_path / "flow"
    flow_dir.mkdir()
    write_flow_png(flow_dir / "000001.png", flow)
    clip = SynthiaSeq(root, flow_dir=flow_dir, crop_bottom=SY_CROP)[0]
    torch.testing.assert_close(clip["flow"][0, 0], torch.full((SY_H - SY_CROP, SY_W), 1.0))
    torch.testing.assert_close(clip["flow"][0, 1], torch.full((SY_H - SY_CROP, SY_W), 0.5))


def test_synthia_corrupt_label_names_the_file(tmp_path):
    root = make_synthia(tmp_path / "s")
    bad = root / "label" / "000002.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    ds = SynthiaSeq(root, require_flow=False, crop_bottom=SY_CROP)
    with pytest.raises(DataFileError, match=re.escape(str(bad))):
        ds[1]


def test_synthia_flow_pairs(tmp_path):
    root = make_synthia(tmp_path / "s")
    flow_dir = tmp_path / "flow"
    pairs = SynthiaSeq(root, num_frames=3, flow_dir=flow_dir, crop_bottom=SY_CROP).flow_pairs()
    frames = root / "rgb"
    assert pairs == [
        (frames / "000001.png", frames / "000000.png", flow_dir / "000001.png"),
        (frames / "000002.png", frames / "000001.png", flow_dir / "000002.png"),
        (frames / "000003.png", frames / "000002.png", flow_dir / "000003.png"),
    ]


# ---------------------------------------------------------------------------------------------------- VIPER
VP_EXPECTED = np.array(
    [
        [8, 8, 8, 8, 6, 6, 6, 6, 8, 8, 255, 255],
        [8, 8, 8, 8, 6, 6, 6, 6, 8, 8, 255, 255],
        [2, 2, 3, 3, 4, 4, 5, 5, 10, 10, 255, 255],
        [2, 2, 3, 3, 4, 4, 5, 5, 10, 10, 255, 255],
        [1, 1, 9, 9, 7, 7, 11, 11, 12, 12, 13, 13],
        [1, 1, 9, 9, 7, 7, 11, 11, 12, 12, 13, 13],
        [10, 10, 0, 0, 255, 255, 255, 255, 0, 0, 14, 14],
        [10, 10, 0, 0, 255, 255, 255, 255, 0, 0, 14, 14],
    ]
)


def test_viper_decodes_labels_and_drops_only_the_ego_vehicle(tmp_path):
    root = make_viper(tmp_path / "viper")
    ds = Viper(root, require_flow=False, size=None)
    assert [(s.sequence, s.frame_ids) for s in ds.samples] == [("001", (9, 10))]
    clip = ds[0]
    assert clip["frames"].shape == (2, 3, VP_H, VP_W) and clip["labels"].shape == (2, VP_H, VP_W)
    assert (clip["labels"][0] == 255).all()  # frame 9 has no class PNG
    np.testing.assert_array_equal(clip["labels"][1].numpy(), VP_EXPECTED)
    # JPEG is lossy: colours only approximately, but in RGB order.
    assert abs(clip["frames"][1, 0].mean().item() * 255 - 80) < 3
    assert abs(clip["frames"][1, 2].mean().item() * 255 - 150) < 3
    meta = clip["meta"]
    assert meta["dataset"] == "viper" and meta["sequence"] == "001" and meta["frame_ids"] == [9, 10]
    assert [Path(p).name for p in meta["paths"]] == ["001_00009.jpg", "001_00010.jpg"]
    assert Path(meta["label_path"]) == root / "train" / "cls" / "001" / "001_00010.png"


def test_viper_resizes_frames_area_and_labels_nearest(tmp_path):
    root = make_viper(tmp_path / "viper")
    clip = Viper(root, require_flow=False, size=(VP_H // 2, VP_W // 2))[0]
    assert clip["frames"].shape == (2, 3, VP_H // 2, VP_W // 2)
    np.testing.assert_array_equal(clip["labels"][1].numpy(), VP_EXPECTED[::2, ::2])


@pytest.mark.parametrize("encoding", ["palette", "grey", "rgb"])
def test_viper_class_png_encodings(tmp_path, encoding):
    path = viper_png(tmp_path / "x.png", VP_IDS, encoding)
    np.testing.assert_array_equal(read_viper_ids(path), VP_IDS)


def test_viper_grey_class_colours_are_read_as_colours(tmp_path):
    ids = np.array([[9, 10], [0, 9]], dtype=np.uint8)  # building (70, 70, 70), infrastructure (153, 153, 153)
    np.testing.assert_array_equal(read_viper_ids(viper_png(tmp_path / "x.png", ids, "rgb")), ids)


def test_viper_rejects_unknown_colours_and_corrupt_files(tmp_path):
    colours = np.array(VIPER_COLOURS, dtype=np.uint8)[VP_IDS]
    colours[0, 0] = (1, 2, 3)
    path = tmp_path / "colour.png"
    Image.fromarray(colours).save(path)
    with pytest.raises(DataFileError, match=r"colour\.png holds colours \[\(1, 2, 3\)\]"):
        read_viper_ids(path)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"garbage")
    with pytest.raises(DataFileError, match=re.escape(str(bad))):
        read_viper_ids(bad)


def test_ego_vehicle_absent_when_bottom_centre_is_not_a_car():
    ids = np.full((4, 6), 24, dtype=np.uint8)
    ids[3, 3] = 3
    np.testing.assert_array_equal(remove_ego_vehicle(ids), ids)


def test_viper_flows_ours_and_published(tmp_path):
    root = make_viper(
        tmp_path / "viper", images={"001": [8, 9, 10], "002": [19, 20]}, labels={"001": [10], "002": [20]}
    )
    flow_dir = tmp_path / "flow"
    flow_dir.joinpath("001").mkdir(parents=True)
    write_flow_png(flow_dir / "001" / "001_00010.png", uniform_flow(VP_H, VP_W, 1.5, 0.5))
    write_published_flow(
        flow_dir / "002_0002000019_int16_x10.npy", uniform_flow(2 * VP_H, 2 * VP_W, -3.0, 2.0)
    )
    ds = Viper(root, flow_dir=flow_dir, size=None)
    assert len(ds) == 2
    flow = ds[0]["flow"]
    assert flow.shape == (1, 2, VP_H, VP_W) and torch.allclose(flow[0, 0], torch.tensor(1.5))
    flow = ds[1]["flow"]
    assert torch.allclose(flow[0, 0], torch.tensor(-1.5)) and torch.allclose(flow[0, 1], torch.tensor(1.0))
    ds3 = Viper(root, num_frames=3, flow_dir=flow_dir, size=None)
    assert [s.frame_ids for s in ds3.samples] == [(8, 9, 10)]  # 002 lacks frame 18
    with pytest.raises(DataFileError) as err:
        ds3[0]
    assert str(flow_dir / "001" / "001_00009.png") in str(err.value)
    assert "001_0000900008_int16_x10.npy" in str(err.value) and VIPER_CMD in str(err.value)
    img = root / "train" / "img"
    assert ds3.flow_pairs() == [
        (img / "001" / "001_00009.jpg", img / "001" / "001_00008.jpg", flow_dir / "001" / "001_00009.png"),
        (img / "001" / "001_00010.jpg", img / "001" / "001_00009.jpg", flow_dir / "001" / "001_00010.png"),
    ]


def test_viper_missing_dataset(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="VIPER is not at .*playing-for-benchmarks"):
        Viper(tmp_path / "nowhere", require_flow=False)


# ------------------------------------------------------------------------------------------- Cityscapes-Seq
def _expected_train_ids(cs) -> np.ndarray:
    """The train ids of :func:`cityscapes_label_ids` by the official names (rider -> person for VIPER)."""
    out = np.full(CS_H * CS_W, cs.class_names.index("road"), dtype=np.int64)
    out[34] = 255
    for label_id, (name, _, _) in CITYSCAPES_LABELS.items():
        name = "person" if cs is VIPER and name == "rider" else name
        out[label_id] = cs.class_names.index(name) if name in cs.class_names else 255
    return out.reshape(CS_H, CS_W)


@pytest.mark.parametrize("cs", [SYNTHIA, VIPER], ids=lambda s: s.name)
def testcityscapes_val_clip_keeps_full_resolution_label(tmp_path, cs):
    root = cityscapes_val(tmp_path / "cityscapes")
    flow_dir = tmp_path / "flow"
    flow_dir.joinpath("val", "frankfurt").mkdir(parents=True)
    write_flow_png(
        flow_dir / "val" / "frankfurt" / "frankfurt_000000_000294_000293.png",
        uniform_flow(CS_H, CS_W, 2.0, -1.0),
    )
    ds = CityscapesSeq(root, "val", cs.name, flow_dir=flow_dir, size=CS_SIZE)
    assert ds.num_frames == 2 and ds.labelled and ds.num_classes == cs.num_classes
    assert len(ds) == 1  # lindau has no frame t-1: not a sample
    clip = ds[0]
    assert clip["frames"].shape == (2, 3, *CS_SIZE)
    assert clip["labels"].shape == (2, CS_H, CS_W)  # full resolution, not the frames' size
    assert clip["flow"].shape == (1, 2, *CS_SIZE)
    assert (clip["labels"][0] == 255).all()
    np.testing.assert_array_equal(clip["labels"][1].numpy(), _expected_train_ids(cs))
    torch.testing.assert_close(clip["flow"][0, 0], torch.full(CS_SIZE, 1.0))
    torch.testing.assert_close(clip["flow"][0, 1], torch.full(CS_SIZE, -0.5))
    torch.testing.assert_close(clip["frames"][:, 0, 0, 0], torch.tensor([293.0, 294.0]) % 250 / 255)
    meta = clip["meta"]
    assert meta["dataset"] == "cityscapes_seq" and meta["split"] == "val"
    assert meta["sequence"] == "frankfurt_000000" and meta["frame_ids"] == [293, 294]
    assert Path(meta["label_path"]).name == "frankfurt_000000_000294_gtFine_labelIds.png"
    batch = collate_clips([clip, clip])
    assert batch["labels"].shape == (2, 2, CS_H, CS_W) and batch["frames"].shape == (2, 2, 3, *CS_SIZE)


def test_cityscapes_label_size_resizes_labels_nearest(tmp_path):
    root = cityscapes_val(tmp_path / "cityscapes")
    clip = CityscapesSeq(root, "val", "viper", size=CS_SIZE, label_size=CS_SIZE, require_flow=False)[0]
    assert clip["labels"].shape == (2, *CS_SIZE)
    np.testing.assert_array_equal(clip["labels"][1].numpy(), _expected_train_ids(VIPER)[::2, ::2])


def test_cityscapes_train_clips_from_gtfine_names(tmp_path):
    # A copy trimmed to the clips' own frames: bochum's positions are lost (its run 311..313 reads as a
    # snippet from 311), so only the label names index it.
    snippets = {("aachen", "000000"): [17, 18, 19], ("bochum", "000000"): [311, 312, 313]}
    labels = {("aachen", "000000"): [19], ("bochum", "000000"): [313]}
    root = make_cityscapes(tmp_path / "cityscapes", "train", snippets, labels)
    flow_dir = tmp_path / "flow"
    by_position = CityscapesSeq(root, "train", "synthia", flow_dir=flow_dir, size=CS_SIZE)
    assert by_position.annotated_from == "positions" and len(by_position) == 1
    ds = CityscapesSeq(root, "train", "synthia", flow_dir=flow_dir, size=CS_SIZE, annotated_from="labels")
    assert ds.num_frames == 3 and not ds.labelled
    assert [(s.sequence, s.frame_ids) for s in ds.samples] == [
        ("aachen_000000", (17, 18, 19)),
        ("bochum_000000", (311, 312, 313)),
    ]
    seq_dir = root / "leftImg8bit_sequence" / "train" / "aachen"
    out = flow_dir / "train" / "aachen"
    assert ds.flow_pairs()[:2] == [
        (seq_dir / "aachen_000000_000018_leftImg8bit.png", seq_dir / "aachen_000000_000017_leftImg8bit.png",
         out / "aachen_000000_000018_000017.png"),
        (seq_dir / "aachen_000000_000019_leftImg8bit.png", seq_dir / "aachen_000000_000018_leftImg8bit.png",
         out / "aachen_000000_000019_000018.png"),
    ]  # fmt: skip
    # Published flows: t-1 -> t-2 and t -> t-1, both at the frames' own size.
    write_published_flow(
        flow_dir / "aachen_000000_000018_000017_int16_x10.npy", uniform_flow(*CS_SIZE, 1.0, 0.0)
    )
    write_published_flow(
        flow_dir / "aachen_000000_000019_000018_int16_x10.npy", uniform_flow(*CS_SIZE, 0.0, 2.0)
    )
    clip = ds[0]
    assert "labels" not in clip and clip["frames"].shape == (3, 3, *CS_SIZE)
    assert clip["flow"].shape == (2, 2, *CS_SIZE)
    assert torch.allclose(clip["flow"][0, 0], torch.tensor(1.0)) and torch.allclose(
        clip["flow"][1, 1], torch.tensor(2.0)
    )
    with pytest.raises(DataFileError) as err:
        ds[1]
    assert str(flow_dir / "train" / "bochum" / "bochum_000000_000312_000311.png") in str(err.value)
    assert "python -m dastc.flow.estimate dataset=synthia flow.split=train" in str(err.value)


def test_cityscapes_train_clips_by_snippet_position(tmp_path):
    # Frame numbers restart per snippet (aachen) or run on within a sequence (bochum: two adjacent snippets
    # 294..353, annotated 313 and 343; hamburg: 23..52, annotated 42). Partial copies: frankfurt's snippet
    # 275..304 lacks 280 and 300..304 but keeps its first frame (annotated 294); krefeld keeps only 17..19
    # of a per-snippet numbered sequence; hamburg's second snippet stops at 110, before its annotated 119.
    snippets = {
        ("aachen", "000000"): range(30),
        ("aachen", "000001"): range(30),
        ("bochum", "000000"): range(294, 354),
        ("frankfurt", "000000"): [f for f in range(275, 300) if f != 280],
        ("hamburg", "000000"): [*range(23, 53), *range(100, 111)],
        ("krefeld", "000000"): [17, 18, 19],
    }
    # The train split never reads gtFine: a stray label on another frame changes nothing.
    root = make_cityscapes(tmp_path / "cityscapes", "train", snippets, {("aachen", "000000"): [5]})
    ds = CityscapesSeq(root, "train", "viper", size=CS_SIZE, require_flow=False)
    assert ds.annotated_from == "positions"
    assert [(s.sequence, s.frame_ids) for s in ds.samples] == [
        ("aachen_000000", (17, 18, 19)),
        ("aachen_000001", (17, 18, 19)),
        ("bochum_000000", (311, 312, 313)),
        ("bochum_000000", (341, 342, 343)),
        ("frankfurt_000000", (292, 293, 294)),
        ("hamburg_000000", (40, 41, 42)),
        ("krefeld_000000", (17, 18, 19)),
    ]
    seq_dir = root / "leftImg8bit_sequence" / "train" / "hamburg"
    assert ds.missing_frames == [seq_dir / f"hamburg_000000_{t:06d}_leftImg8bit.png" for t in (117, 118, 119)]
    assert annotated_frames_from_sequences({("x", "000000"): set(range(30))}) == {("x", "000000"): {19}}
    assert annotated_frames_from_sequences({("x", "000000"): {40, 41, 42, 70}}) == {("x", "000000"): {59, 89}}


def test_cityscapes_train_without_any_placeable_clip_says_what_it_looked_for(tmp_path):
    root = make_cityscapes(tmp_path / "c", "train", {("bochum", "000000"): [311, 312, 313]}, labels=None)
    with pytest.raises(DatasetNotFoundError) as err:
        CityscapesSeq(root, "train", require_flow=False)
    message = str(err.value)
    frames_dir = root / "leftImg8bit_sequence" / "train"
    assert message.startswith(
        f"cityscapes_seq at {frames_dir} holds no clip of 3 consecutive frames ending on"
    )
    assert "looked for the 20th frame of each 30-frame snippet" in message
    assert message.endswith(f"the first {frames_dir / 'bochum' / 'bochum_000000_000328_leftImg8bit.png'}")
    with pytest.raises(DatasetNotFoundError, match="gtFine_trainvaltest.zip"):
        CityscapesSeq(root, "train", require_flow=False, annotated_from="labels")
    # A copy trimmed to its clips' frames, with labels: the error points at them, and they index it.
    make_cityscapes(root, "train", {}, {("bochum", "000000"): [313]})
    with pytest.raises(
        DatasetNotFoundError, match=f"annotated_from=labels reads {root / 'gtFine' / 'train'}"
    ):
        CityscapesSeq(root, "train", require_flow=False)
    assert len(CityscapesSeq(root, "train", require_flow=False, annotated_from="labels")) == 1
    with pytest.raises(ValueError, match="annotated_from must be one of positions, labels"):
        CityscapesSeq(root, "train", require_flow=False, annotated_from="names")


def test_cityscapes_partial_copy_and_num_frames(tmp_path):
    snippets = {("aachen", "000000"): [18, 19], ("aachen", "000001"): [17, 18, 19]}
    labels = {("aachen", "000000"): [19], ("aachen", "000001"): [19]}
    root = make_cityscapes(tmp_path / "cityscapes", "train", snippets, labels)
    assert len(CityscapesSeq(root, "train", require_flow=False, size=CS_SIZE)) == 1  # t-2 missing in 000000
    assert len(CityscapesSeq(root, "train", num_frames=2, require_flow=False, size=CS_SIZE)) == 2


def test_cityscapes_missing_data(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        CityscapesSeq(tmp_path / "nowhere", "val", require_flow=False)
    assert "leftImg8bit_sequence_trainvaltest.zip" in str(err.value)
    assert str(tmp_path / "nowhere" / "leftImg8bit_sequence" / "val") in str(err.value)
    root = make_cityscapes(tmp_path / "c", "val", {("lindau", "000000"): [18, 19]}, labels=None)
    with pytest.raises(DatasetNotFoundError, match="gtFine_trainvaltest.zip"):
        CityscapesSeq(root, "val", require_flow=False)
    with pytest.raises(DataFileError, match="dataset=viper flow.split=val"):
        CityscapesSeq(root, "val", "viper")
    with pytest.raises(ValueError, match="unknown Cityscapes-Seq split"):
        CityscapesSeq(root, "test", require_flow=False)


def test_cityscapes_corrupt_frame_and_label_name_the_file(tmp_path):
    root = cityscapes_val(tmp_path / "cityscapes")
    ds = CityscapesSeq(root, "val", require_flow=False, size=CS_SIZE)
    label = Path(ds.samples[0].labels[-1])
    label.write_bytes(b"not a png")
    with pytest.raises(DataFileError, match=re.escape(str(label))):
        ds[0]
    frame = ds.samples[0].frames[0]
    frame.unlink()
    with pytest.raises(DataFileError, match=re.escape(f"{frame} is missing")):
        ds[0]
