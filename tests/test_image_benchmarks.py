"""The image extension's benchmarks (docs/benchmarks.md, Image benchmarks) on tiny copies in the datasets' own
encodings: decoding pixel for pixel, clear errors, and training and evaluation through the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from real_fixtures import (
    BENCH_CITYSCAPES_IDS,
    GTA5_IDS,
    GTA5_TINY,
    SYNTHIA_IMAGE_IDS,
    SYNTHIA_IMAGE_TINY,
    write_cityscapes_images,
    write_gta5,
    write_image_benchmark,
    write_synthia_image,
)
from test_entry_points import run

from dastc.data.class_spaces import GTA5, SYNTHIA_IMAGE, SYNTHIA_IMAGE_13
from dastc.data.image_datasets import CityscapesImages, GTA5Images, SynthiaImages
from dastc.errors import DataFileError, DatasetNotFoundError

CITYSCAPES_19 = dict(GTA5.cityscapes_ids)


def test_gta5_labels_are_cityscapes_label_ids_decoded_into_19_classes(tmp_path):
    reader = GTA5Images(write_gta5(tmp_path / "GTA5"), size=None)
    clip = reader[0]
    assert len(reader) == 3 and clip["frames"].shape == (1, 3, *GTA5_IDS.shape) and "flow" not in clip
    expected = np.vectorize(lambda i: CITYSCAPES_19.get(int(i), 255))(GTA5_IDS)
    assert np.array_equal(clip["labels"][0].numpy(), expected)
    assert set(np.unique(expected)) == set(range(19)) | {255}  # every class, and unlabelled ids ignored
    resized = GTA5Images(tmp_path / "GTA5", size=(24, 40))[0]  # labels follow the frame, nearest neighbour
    assert resized["labels"].shape == (1, 24, 40) and np.array_equal(resized["labels"][0], expected[::2, ::2])


def test_a_gta5_label_saved_as_colours_is_refused_naming_it(tmp_path):
    root = write_gta5(tmp_path / "GTA5", count=1)
    Image.new("RGB", (80, 48)).save(root / "labels" / "00001.png")
    with pytest.raises(DataFileError, match=r"labels/00001.png is a RGB image; GTA5 labels are palette PNGs"):
        GTA5Images(root, size=None)[0]


def test_synthia_rand_labels_read_from_the_red_channel_into_16_classes(tmp_path):
    clip = SynthiaImages(write_synthia_image(tmp_path / "RAND_CITYSCAPES"))[1]
    table = dict(SYNTHIA_IMAGE.source_ids)
    expected = np.vectorize(lambda i: table.get(int(i), 255))(SYNTHIA_IMAGE_IDS)
    assert np.array_equal(clip["labels"][0].numpy(), expected)
    assert set(np.unique(expected)) == set(range(16)) | {255}
    assert [SYNTHIA_IMAGE.class_names[c] for c in range(16) if c not in SYNTHIA_IMAGE_13] == [
        "wall",
        "fence",
        "pole",
    ]


def test_cityscapes_images_val_keeps_full_resolution_labels_and_train_has_none(tmp_path):
    root = write_cityscapes_images(tmp_path / "Cityscapes")
    val = CityscapesImages(root, "val", space="synthia_image", size=(32, 64))
    clip = val[0]
    assert len(val) == 2 and clip["frames"].shape == (1, 3, 32, 64)
    table = dict(SYNTHIA_IMAGE.cityscapes_ids)
    assert np.array_equal(
        clip["labels"][0].numpy(), np.vectorize(lambda i: table.get(int(i), 255))(BENCH_CITYSCAPES_IDS)
    )
    train = CityscapesImages(root, "train", size=(32, 64))
    assert len(train) == 3 and "labels" not in train[0]
    with pytest.raises(DatasetNotFoundError, match="Cityscapes is not at .*leftImg8bit_trainvaltest.zip"):
        CityscapesImages(tmp_path / "nowhere", "val")


@pytest.mark.parametrize(
    "name,tiny,classes", [("gta5", GTA5_TINY, 19), ("synthia_image", SYNTHIA_IMAGE_TINY, 16)]
)
def test_train_and_eval_commands_on_an_image_benchmark(tmp_path, name, tiny, classes):
    data_dir = write_image_benchmark(tmp_path / "data", name)
    out = tmp_path / "run"
    common = [f"paths.data_dir={data_dir}", "dataset.num_workers=0", "dataset.pin_memory=false"]
    run(
        "dastc.train",
        f"dataset={name}",
        "method=dastc",
        "trainer=cpu",
        "trainer.max_steps=2",
        "dataset.schedule.val_every=2",
        "dataset.schedule.warmup_steps=1",
        "dataset.schedule.feature_fusion_start=0",
        f"paths.output_dir={out}",
        *common,
        *tiny,
        cwd=tmp_path,
    )
    trained = json.loads((out / "metrics.json").read_text())
    target = trained["metrics"]["target"]
    assert len(target["IoU"]) == classes and ("mIoU13" in target) == (name == "synthia_image")
    proc = run(
        "dastc.eval", f"ckpt_path={out}/checkpoints/last.ckpt", f"paths.data_dir={data_dir}", cwd=tmp_path
    )
    (eval_dir,) = (out / "eval").iterdir()
    assert json.loads((eval_dir / "metrics.json").read_text())["metrics"] == trained["metrics"]
    if name == "synthia_image":
        assert "mIoU13" in proc.stdout


@pytest.mark.parametrize(
    "preset,name", [("gta2city_dastc", "gta5"), ("synthia2city_image_dastc", "synthia_image")]
)
def test_image_presets_carry_the_papers_image_settings_and_train(tmp_path, preset, name):
    from dastc.config import compose_config
    from dastc.train import train

    data_dir = write_image_benchmark(tmp_path / "data", name)
    cfg = compose_config("train", [f"experiment={preset}", f"paths.data_dir={data_dir}"])
    optim = cfg.method.optim
    assert (cfg.dataset.name, cfg.backbone.arch, cfg.backbone.encoder_name) == (name, "Segformer", "mit_b5")
    assert (optim.name, optim.lr, optim.head_lr_mult, optim.lr_warmup_steps) == ("adamw", 6e-5, 10.0, 1500)
    assert (cfg.method.teacher.momentum, cfg.dataset.batch_size, cfg.trainer.max_steps) == (0.999, 2, 40000)
    assert cfg.method.warmup_steps == 0 and cfg.backbone.temporal == "current_frame"
    if name != "gta5":  # one preset trains: they differ only in the benchmark, which the CLI test trains
        return
    tiny = [
        "backbone.encoder_name=mit_b0",
        "backbone.pretrained=null",  # tests never download
        "trainer=cpu",
        "trainer.precision=32-true",
        "trainer.max_steps=2",
        "dataset.schedule.val_every=2",
        "dataset.schedule.feature_fusion_start=0",
        "method.optim.lr_warmup_steps=1",
        "dataset.num_workers=0",
        "dataset.pin_memory=false",
        "callbacks=none",
        *(GTA5_TINY if name == "gta5" else SYNTHIA_IMAGE_TINY),
    ]
    cfg = compose_config(
        "train", [f"experiment={preset}", f"paths.data_dir={data_dir}", *tiny], output_dir=tmp_path / "run"
    )
    metrics = train(cfg)
    assert 0 <= metrics["target"]["mIoU"] <= 100


def test_data_tools_on_an_image_benchmark(tmp_path):
    data_dir = write_image_benchmark(tmp_path / "data", "synthia_image")
    verified = run("dastc.data.verify", "dataset=synthia_image", f"paths.data_dir={data_dir}", cwd=tmp_path)
    assert "all checks passed" in verified.stdout
    flow = run(
        "dastc.flow.estimate",
        "dataset=synthia_image",
        f"paths.data_dir={data_dir}",
        cwd=tmp_path,
        check=False,
    )
    assert (
        flow.returncode != 0
        and "an image benchmark" in flow.stderr + flow.stdout
        and "Traceback" not in flow.stderr
    )
