"""The real benchmarks end to end on tiny copies in the datasets' own encodings: configs, flow estimation,
verification and training through the command line."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from hydra.utils import instantiate
from real_fixtures import (
    SYNTHIA_TINY,
    VIPER_TINY,
    synthia_readers,
    uniform_flow,
    write_published_flow,
    write_synthia_benchmark,
    write_viper_benchmark,
)
from test_entry_points import run

from dastc.build import build_datamodule
from dastc.config import compose_config
from dastc.data.class_spaces import SPACES
from dastc.data.clip_transforms import AugmentedClips
from dastc.data.index import write_index
from dastc.data.verify import verify
from dastc.errors import DastcError
from dastc.flow.estimate import estimate

TINY = {"synthia": SYNTHIA_TINY, "viper": VIPER_TINY}
WRITERS = {"synthia": write_synthia_benchmark, "viper": write_viper_benchmark}
FAST = ["dataset.num_workers=0", "dataset.pin_memory=false"]


@pytest.fixture(scope="module")
def benchmarks(tmp_path_factory) -> dict[str, Path]:
    """Each benchmark written once, flows included, into its own data dir."""
    return {name: write(tmp_path_factory.mktemp(name)) for name, write in WRITERS.items()}


def _cfg(config: str, data_dir: Path, *overrides: str, tmp_path: Path):
    return compose_config(config, [f"paths.data_dir={data_dir}", *overrides], output_dir=tmp_path / "out")


@pytest.mark.parametrize("name", ["synthia", "viper"])
def test_benchmark_configs_follow_method_md(tmp_path, name):
    cfg = _cfg("train", tmp_path, f"dataset={name}", tmp_path=tmp_path).dataset
    space = SPACES[name]
    assert list(cfg.class_names) == list(space.class_names) and cfg.num_classes == space.num_classes
    assert list(cfg.eval_classes or range(space.num_classes)) == list(space.eval_classes)
    assert list(cfg.schedule.long_tail_classes) == list(space.long_tail_classes)
    schedule = {"max_steps": 40000, "ckpt_every": 1000, "poly_horizon": 250000, "ema_momentum": 0.999}
    schedule |= {"feature_fusion_start": 8000, "warmup_steps": 0}
    schedule |= {"lr": 2.5e-4, "rare_classes": 2} if name == "synthia" else {}
    schedule |= {"lr": 1e-4, "rare_classes": 3} if name == "viper" else {}
    assert {k: cfg.schedule[k] for k in schedule} == schedule
    # lambda_T and the strong target augmentation per method (TPS, ECCV 2022; the authors' DA-STC loop).
    per_method = {"tps": (1.0, True), "dastc": (1.0, True)} if name == "synthia" else {}
    per_method |= {"tps": (0.1, True), "dastc": (0.2, False)} if name == "viper" else {}
    for method, expected in per_method.items():
        assert (cfg.schedule[method].lambda_target, cfg.schedule[method].strong_target_aug) == expected
    assert cfg.batch_size == 1 and cfg.class_index.endswith(f"index/{name}_source_classes.json")
    assert (cfg.source.dataset.num_frames, cfg.target.dataset.num_frames, cfg.val.num_frames) == (2, 3, 2)
    assert list(cfg.target.dataset.size) == list(cfg.val.size) == [512, 1024] and cfg.val.label_size is None
    if name == "synthia":
        assert cfg.source.dataset.crop_bottom == 120
    else:
        assert list(cfg.source.dataset.size) == [720, 1280]


@pytest.mark.parametrize("name", ["synthia", "viper"])
def test_benchmark_datamodule_serves_augmented_clips_with_flow(benchmarks, tmp_path, name):
    cfg = _cfg("train", benchmarks[name], f"dataset={name}", *TINY[name], *FAST, tmp_path=tmp_path)
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    assert all(isinstance(datamodule.datasets[k], AugmentedClips) for k in ("source", "target"))
    source_hw = (32, 64) if name == "synthia" else (32, 48)
    pair = datamodule.datasets["source"][0], datamodule.datasets["target"][0]
    for clip, frames, hw in zip(pair, (2, 3), (source_hw, (32, 64)), strict=True):
        assert clip["frames"].shape == (frames, 3, *hw) and clip["flow"].shape == (frames - 1, 2, *hw)
    assert pair[0]["labels"].shape == (2, *source_hw) and "labels" not in pair[1]
    val = datamodule.datasets["val"][0]
    assert val["frames"].shape == (2, 3, 32, 64) and val["labels"].shape == (2, 64, 128)  # full resolution


def test_estimate_flow_command_writes_every_flow_then_skips(tmp_path):
    data_dir = write_synthia_benchmark(tmp_path / "data", flow=False)
    args = ["dataset=synthia", f"paths.data_dir={data_dir}", "flow.workers=0", *SYNTHIA_TINY]
    proc = run("dastc.flow.estimate", *args, cwd=tmp_path)
    # 5 SYNTHIA clips (one flow each), 2 Cityscapes train clips (two each), 2 val clips (one each).
    assert "Optical flow for dataset=synthia: 11 computed, 0 already there" in proc.stdout
    assert str(data_dir / "flow" / "cityscapes_seq" / "val") in proc.stdout
    readers = synthia_readers(data_dir)
    assert all(output.is_file() for reader in readers for _, _, output in reader.flow_pairs())
    proc = run("dastc.flow.estimate", *args, cwd=tmp_path)
    assert "0 computed, 11 already there (skipped)" in proc.stdout
    for reader in readers:  # the readers now load every clip with its flow
        for clip in (reader[i] for i in range(len(reader))):
            assert clip["flow"].shape == (clip["frames"].shape[0] - 1, 2, *clip["frames"].shape[-2:])
    assert not list(tmp_path.glob("outputs")) and not list(
        tmp_path.glob(".hydra")
    )  # a tool writes no run dir


def test_estimate_flow_split_and_bad_options(tmp_path):
    data_dir = write_viper_benchmark(tmp_path / "data", flow=False)
    # A published flow (the authors' format) is used as it is, not estimated again.
    write_published_flow(
        data_dir / "flow" / "viper" / "002_0001000009_int16_x10.npy", uniform_flow(32, 48, 1, 0)
    )
    counts = estimate(_cfg("estimate_flow", data_dir, "dataset=viper", "flow.split=source", "flow.workers=0",
                           "flow.progress=false", *VIPER_TINY, tmp_path=tmp_path))  # fmt: skip
    assert counts == (2, 1)
    assert len(list((data_dir / "flow" / "viper").rglob("*.png"))) == 2
    assert not (data_dir / "flow" / "cityscapes_seq").exists()
    with pytest.raises(DastcError, match="flow.split must be one of source, train, val, all"):
        estimate(_cfg("estimate_flow", data_dir, "dataset=viper", "flow.split=test", tmp_path=tmp_path))
    with pytest.raises(
        DastcError, match="flow.raft_weights=<file>: download torchvision's Raft_Large_Weights"
    ):
        estimate(_cfg("estimate_flow", data_dir, "dataset=viper", "flow.method=raft", tmp_path=tmp_path))


def test_verify_command_passes_on_a_complete_benchmark(benchmarks, tmp_path):
    args = ["dataset=synthia", f"paths.data_dir={benchmarks['synthia']}", *SYNTHIA_TINY]
    proc = run("dastc.data.verify", *args, "verify.progress=false", cwd=tmp_path)
    assert "dataset=synthia: all checks passed (source, train, val)" in proc.stdout
    assert "849" in proc.stdout and "2,975" in proc.stdout and "500" in proc.stdout  # docs/benchmarks.md
    assert "traffic light" in proc.stdout and "8.33 %" in proc.stdout  # the source class histogram


def _drop_a_flow(data_dir: Path) -> Path:
    path = data_dir / "flow" / "cityscapes_seq" / "train" / "bochum" / "bochum_000000_000312_000311.png"
    path.unlink()
    return path


def _drop_a_frame(data_dir: Path) -> Path:
    path = (
        data_dir
        / "Cityscapes"
        / "leftImg8bit_sequence"
        / "val"
        / "lindau"
        / "lindau_000001_000018_leftImg8bit.png"
    )
    path.unlink()
    return path


def _break_a_label(data_dir: Path) -> Path:
    """Give one SYNTHIA label a raw class id (300) that no SYNTHIA release has."""
    path = data_dir / "SYNTHIA-SEQS-04-DAWN" / "GT" / "LABELS" / "Stereo_Left" / "Omni_F" / "000004.png"
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    label[0, 0, 2] = 300
    assert cv2.imwrite(str(path), label)
    return path


PROBLEMS = {
    "missing flow": (
        _drop_a_flow,
        "1 flow file missing: compute them with `python -m dastc.flow.estimate dataset=synthia`",
    ),
    "missing frame": (_drop_a_frame, "labelled clips miss 1 frame (those clips are left out"),
    "bad label value": (
        _break_a_label,
        "1 label file unreadable or holding values outside the dataset's class ids",
    ),
}


@pytest.mark.parametrize("problem", PROBLEMS)
def test_verify_names_the_file_of_the_first_problem(benchmarks, tmp_path, problem):
    data_dir = shutil.copytree(benchmarks["synthia"], tmp_path / "data")
    make_problem, message = PROBLEMS[problem]
    path = make_problem(data_dir)
    cfg = _cfg(
        "verify", data_dir, "dataset=synthia", "verify.progress=false", *SYNTHIA_TINY, tmp_path=tmp_path
    )
    with pytest.raises(DastcError) as err:
        verify(cfg)
    assert str(err.value).startswith(message) and f"\n  {path}" in str(err.value)
    if problem == "bad label value":
        assert str(err.value).endswith(": raw ids [300] outside SYNTHIA-Seq's 0..22")


def test_verify_lists_ten_files_and_counts_the_rest(benchmarks, tmp_path):
    data_dir = shutil.copytree(benchmarks["synthia"], tmp_path / "data")
    shutil.rmtree(data_dir / "flow")
    cfg = _cfg("verify", data_dir, "dataset=synthia", "verify.max_listed=4", *SYNTHIA_TINY, tmp_path=tmp_path)
    with pytest.raises(DastcError, match=r"11 flow files missing") as err:
        verify(cfg)
    assert len(re.findall(r"^  /.*\.png$", str(err.value), re.M)) == 4 and str(err.value).endswith(
        "and 7 more"
    )


# DA-STC mixes source into target clips, so the tiny VIPER frames (32x48) need target frames no larger.
SAME_SIZE = {
    "synthia": SYNTHIA_TINY,
    "viper": [*VIPER_TINY[:1], "dataset.target.dataset.size=[32,48]", "dataset.val.size=[32,48]"],
}


@pytest.mark.parametrize("name,scored", [("synthia", 11), ("viper", 15)])
def test_the_one_command_runs_flow_both_stages_and_the_table(benchmarks, tmp_path, name, scored):
    # SYNTHIA-Seq from a copy without flow (computed first); VIPER from the shared copy (its flow is there).
    data_dir = (
        write_synthia_benchmark(tmp_path / "data", flow=False) if name == "synthia" else benchmarks[name]
    )
    out = tmp_path / "run"
    proc = run(
        "dastc.train",
        f"dataset={name}",
        "backbone=accel",
        "backbone.depth=18",
        "backbone.pretrained=null",
        "dataset.schedule.feature_fusion_start=0",  # every DA-STC loss from the first step
        f"paths.data_dir={data_dir}",
        f"paths.output_dir={out}",
        "trainer.max_steps=2",
        "dataset.schedule.val_every=2",
        "callbacks=none",
        *FAST,
        *SAME_SIZE[name],
        cwd=tmp_path,
    )
    if name == "synthia":
        assert "Optical flow for dataset=synthia:" in proc.stdout and any((data_dir / "flow").rglob("*.png"))
    # The paper's two stages in one run: TPS, then DA-STC from it, beside the paper's rows.
    assert proc.stdout.index("Stage 1/2") < proc.stdout.index("Stage 2/2")
    assert f"Target mIoU ({name}, stage 1/2, final checkpoint, step 2)" in proc.stdout
    assert f"Target mIoU ({name}, stage 2/2, final checkpoint, step 2)" in proc.stdout
    assert "paper: TPS" in proc.stdout and "best on val" in proc.stdout and "Initialised" in proc.stdout
    assert json.loads((out / "stage1_tps/metrics.json").read_text())["method"] == "TPS"
    metrics = json.loads((out / "stage2_dastc/metrics.json").read_text())
    assert metrics["method"] == "DASTC"
    assert metrics["step"] == 2 and len(metrics["metrics"]["target"]["IoU"]) == scored
    assert ("fence" in metrics["metrics"]["target"]["IoU"]) == (name == "viper")  # SYNTHIA: fence not scored
    assert np.isfinite(metrics["metrics"]["target"]["mIoU"])


def test_train_without_the_data_says_what_to_get_and_where(tmp_path):
    data_dir = tmp_path / "nothing"
    proc = run(
        "dastc.train",
        "dataset=synthia",
        f"paths.data_dir={data_dir}",
        f"paths.output_dir={tmp_path / 'run'}",
        *FAST,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (error,) = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert f"SYNTHIA-Seq is not at {data_dir / 'SYNTHIA-SEQS-04-DAWN'}" in error
    assert "https://synthia-dataset.net" in error and "RGB/Stereo_Left/Omni_F/000001.png" in error
    assert error.count(". ") == 0  # one sentence


def test_index_command_writes_which_source_clips_hold_each_class(benchmarks, tmp_path):
    cfg = _cfg(
        "index",
        benchmarks["viper"],
        "dataset=viper",
        f"dataset.class_index={tmp_path}/viper.json",
        *TINY["viper"],
        tmp_path=tmp_path,
    )
    index = write_index(cfg)
    stored = json.loads((tmp_path / "viper.json").read_text())
    assert {int(c): clips for c, clips in stored["classes"].items()} == index.clips
    source = instantiate(build_datamodule(cfg).configs["source"])
    for c, clips in index.clips.items():
        for i, pixels in zip(clips, index.pixels[c], strict=True):
            assert (source[i]["labels"][-1] == c).sum() == pixels
    assert sum(map(len, index.clips.values())) > 0
