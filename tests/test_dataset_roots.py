"""Where the readers find the real datasets, and Cityscapes-Seq training without its train labels.

Each source dataset's root is an ordered list of candidate folders under ``paths.data_dir``: dastc's names
first, then those of the DA-VSN/TPS code (docs/benchmarks.md), so a copy set up for the peers is read as it is
by training, ``python -m dastc.data.verify`` and ``python -m dastc.flow.estimate`` alike.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from real_fixtures import (
    SY_CROP,
    SYNTHIA_TINY,
    VIPER_TINY,
    cityscapes_val,
    make_synthia,
    write_synthia_benchmark,
    write_viper_benchmark,
)
from rich.console import Console
from test_entry_points import run

from dastc.config import compose_config
from dastc.data.benchmark import open_reader
from dastc.data.cityscapes_seq import CityscapesSeq
from dastc.data.real_clips import candidate_roots, find_root, missing_dataset
from dastc.data.synthia_seq import LAYOUTS
from dastc.data.verify import verify
from dastc.errors import DatasetNotFoundError
from dastc.flow.estimate import estimate

TINY = {"synthia": SYNTHIA_TINY, "viper": VIPER_TINY}
WRITERS = {"synthia": write_synthia_benchmark, "viper": write_viper_benchmark}
# Each source's candidate folders under paths.data_dir, in the order they are looked in.
CANDIDATES = {
    "synthia": ["SYNTHIA-SEQS-04-DAWN", "SynthiaSeq/SEQS-04-DAWN"],
    "viper": ["VIPER", "Viper"],
}
SITES = {"synthia": "https://synthia-dataset.net", "viper": "https://playing-for-benchmarks.org"}


def _cfg(config: str, data_dir: Path, *overrides: str, tmp_path: Path):
    return compose_config(config, [f"paths.data_dir={data_dir}", *overrides], output_dir=tmp_path / "out")


def as_peers(data_dir: Path) -> Path:
    """Move the benchmark copies under ``data_dir`` to the DA-VSN/TPS folders and inner layouts:
    ``SynthiaSeq/SEQS-04-DAWN/{rgb,label}/`` (flattened) and ``Viper/train/{img,cls}/``."""
    ours = data_dir / "SYNTHIA-SEQS-04-DAWN"
    if ours.exists():
        peers = data_dir / "SynthiaSeq" / "SEQS-04-DAWN"
        peers.mkdir(parents=True)
        for src, dst in zip(LAYOUTS["original"], LAYOUTS["flattened"], strict=True):
            (ours / src).rename(peers / dst)
        shutil.rmtree(ours)
    if (data_dir / "VIPER").exists():
        (data_dir / "VIPER").rename(data_dir / "Viper")
    return data_dir


# ------------------------------------------------------------------------------------------------ the helper
def test_candidate_roots_and_find_root(tmp_path):
    assert candidate_roots(tmp_path / "a") == [tmp_path / "a"]
    assert candidate_roots([str(tmp_path / "a"), tmp_path / "b"]) == [tmp_path / "a", tmp_path / "b"]
    with pytest.raises(ValueError, match="at least one folder"):
        candidate_roots([])
    (tmp_path / "b").mkdir()
    assert find_root([tmp_path / "a", tmp_path / "b"], Path.is_dir, RuntimeError) == tmp_path / "b"
    with pytest.raises(DatasetNotFoundError) as err:
        find_root(
            [tmp_path / "a", tmp_path / "c"],
            Path.is_dir,
            lambda roots: missing_dataset("X", roots, "download X", roots[0] / "x.png", "x/"),
        )
    assert str(err.value) == (
        f"X is not at {tmp_path / 'a'} nor at {tmp_path / 'c'} (no x/ there): download X and unpack it so "
        f"that {tmp_path / 'a' / 'x.png'} exists (or point the dataset's root at where it is)"
    )


def test_cityscapes_accepts_a_list_of_roots(tmp_path):
    root = cityscapes_val(tmp_path / "Cityscapes")
    ds = CityscapesSeq([tmp_path / "elsewhere", root], "val", require_flow=False, size=(4, 8))
    assert ds.root == root and len(ds) == 1


# --------------------------------------------------------------------------------------- the peers' layouts
@pytest.mark.parametrize("name", ["synthia", "viper"])
def test_the_peers_folders_are_read_without_an_override(tmp_path, name):
    data_dir = as_peers(WRITERS[name](tmp_path / "data"))
    cfg = _cfg("verify", data_dir, f"dataset={name}", "verify.progress=false", *TINY[name], tmp_path=tmp_path)
    source = open_reader(cfg.dataset, "source", require_flow=False)
    assert source.root == data_dir / CANDIDATES[name][1]
    if name == "synthia":
        assert source.layout == "flattened"
    out = io.StringIO()
    verify(cfg, Console(file=out, width=400))  # every check: frames, labels, flows
    assert f"dataset={name}: all checks passed (source, train, val)" in out.getvalue()
    assert str(source.root) in out.getvalue()  # the table says which folder was read


def test_flow_estimation_reads_the_peers_folders(tmp_path):
    data_dir = as_peers(write_viper_benchmark(tmp_path / "data", flow=False))
    options = ["flow.split=source", "flow.workers=0", "flow.progress=false", *VIPER_TINY]
    counts = estimate(_cfg("estimate_flow", data_dir, "dataset=viper", *options, tmp_path=tmp_path))
    assert tuple(counts) == (3, 0)  # VIPER's three clips, one flow each
    assert len(list((data_dir / "flow" / "viper").rglob("*.png"))) == 3


def test_dastc_names_come_first_and_a_folder_without_the_dataset_is_passed_over(tmp_path):
    data_dir = tmp_path / "data"
    make_synthia(data_dir / "SYNTHIA-SEQS-04-DAWN", "original")
    make_synthia(data_dir / "SynthiaSeq" / "SEQS-04-DAWN", "flattened")
    crop = f"dataset.source.dataset.crop_bottom={SY_CROP}"
    cfg = _cfg("train", data_dir, "dataset=synthia", crop, tmp_path=tmp_path)
    assert open_reader(cfg.dataset, "source", require_flow=False).root == data_dir / "SYNTHIA-SEQS-04-DAWN"
    shutil.rmtree(
        data_dir / "SYNTHIA-SEQS-04-DAWN" / "RGB"
    )  # an empty shell of ours: the peers' copy is read
    reader = open_reader(cfg.dataset, "source", require_flow=False)
    assert reader.root == data_dir / "SynthiaSeq" / "SEQS-04-DAWN" and reader.layout == "flattened"


@pytest.mark.parametrize("name", ["synthia", "viper"])
def test_a_missing_dataset_names_every_folder_looked_in(tmp_path, name):
    data_dir = tmp_path / "empty"
    cfg = _cfg("train", data_dir, f"dataset={name}", tmp_path=tmp_path)
    with pytest.raises(DatasetNotFoundError) as err:
        open_reader(cfg.dataset, "source", require_flow=False)
    message = str(err.value)
    where = " nor at ".join(str(data_dir / folder) for folder in CANDIDATES[name])
    assert message.startswith(f"{'SYNTHIA-Seq' if name == 'synthia' else 'VIPER'} is not at {where} (no ")
    assert SITES[name] in message and message.count(". ") == 0  # one sentence


def test_a_root_the_user_gives_is_the_only_folder_looked_in(tmp_path):
    data_dir = tmp_path / "data"
    make_synthia(data_dir / "SynthiaSeq" / "SEQS-04-DAWN", "flattened")  # there, but not where the user says
    mine = tmp_path / "mine"
    cfg = _cfg("train", data_dir, "dataset=synthia", f"dataset.source.dataset.root={mine}", tmp_path=tmp_path)
    with pytest.raises(DatasetNotFoundError) as err:
        open_reader(cfg.dataset, "source", require_flow=False)
    assert str(err.value).startswith(f"SYNTHIA-Seq is not at {mine} (no ") and "SynthiaSeq" not in str(
        err.value
    )


# ---------------------------------------------------------------------- Cityscapes-Seq without gtFine/train
def test_training_needs_no_cityscapes_train_labels(tmp_path):
    data_dir = write_synthia_benchmark(tmp_path / "data")
    shutil.rmtree(data_dir / "Cityscapes" / "gtFine" / "train")
    cfg = _cfg("train", data_dir, "dataset=synthia", *SYNTHIA_TINY, tmp_path=tmp_path)
    target = open_reader(cfg.dataset, "train", require_flow=False)
    assert [s.frame_ids[-1] for s in target.samples] == [19, 313]  # each snippet's 20th frame
    out = tmp_path / "run"
    proc = run(
        "dastc.train",
        "dataset=synthia",
        "backbone=accel",
        "backbone.depth=18",
        "backbone.pretrained=null",
        "method=tps",  # trains on the target clips
        f"paths.data_dir={data_dir}",
        f"paths.output_dir={out}",
        "trainer.max_steps=1",
        "dataset.schedule.val_every=1",
        "callbacks=none",
        "dataset.num_workers=0",
        "dataset.pin_memory=false",
        *SYNTHIA_TINY,
        cwd=tmp_path,
    )
    assert "Target mIoU (synthia, final checkpoint, step 1)" in proc.stdout
    assert json.loads((out / "metrics.json").read_text())["step"] == 1
