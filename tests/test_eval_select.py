"""``python -m dastc.eval select=best`` and the CSV/markdown/JSON outputs, in process."""

import csv
import json
import math

import pytest

from dastc.config import compose_config
from dastc.errors import ConfigError
from dastc.eval import evaluate
from dastc.train import train


@pytest.fixture(scope="module")
def run_dir(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    overrides = [
        f"paths.data_dir={data_dir}",
        "method=source_only",
        "trainer.max_steps=4",
        "dataset.schedule.ckpt_every=2",
        "dataset.schedule.val_every=2",
        "dataset.batch_size=2",
        "trainer.limit_val_batches=2",
    ]
    train(compose_config("train", overrides, output_dir=out))
    return out


def _eval(data_dir, tmp_path, ckpt, *overrides):
    cfg = compose_config(
        "eval",
        [f"ckpt_path={ckpt}", f"paths.data_dir={data_dir}", "+trainer.limit_val_batches=2", *overrides],
        output_dir=tmp_path,
    )
    return evaluate(cfg), json.loads((tmp_path / "metrics.json").read_text())


def test_select_best_scores_every_checkpoint_of_the_run_and_labels_the_choice(data_dir, run_dir, tmp_path):
    metrics, stored = _eval(data_dir, tmp_path / "best", run_dir / "checkpoints/last.ckpt", "select=best")
    candidates = stored["candidates"]
    # step000002, step000004; last.ckpt was written at step 4 too: the same weights are not scored twice
    assert [c["step"] for c in candidates] == [2, 4]
    assert [c["checkpoint"].rsplit("/", 1)[-1] for c in candidates] == ["step000002.ckpt", "step000004.ckpt"]
    best = max(candidates, key=lambda c: c["target_mIoU"])
    assert stored["selection"] == "best of 2 checkpoints, selected on target val"
    assert metrics["target"]["mIoU"] == best["target_mIoU"] == stored["metrics"]["target"]["mIoU"]
    assert stored["checkpoint"] == best["checkpoint"]
    # Each candidate's score is what scoring that checkpoint alone gives.
    alone, _ = _eval(data_dir, tmp_path / "alone", candidates[0]["checkpoint"])
    assert alone["target"]["mIoU"] == candidates[0]["target_mIoU"]
    assert "Checkpoints scored" in (tmp_path / "best" / "metrics.md").read_text()


def test_csv_markdown_and_json_outputs_agree(data_dir, run_dir, tmp_path):
    _, stored = _eval(data_dir, tmp_path, run_dir / "checkpoints/last.ckpt")
    rows = list(csv.reader((tmp_path / "metrics.csv").open()))
    assert rows[0] == ["class", "target", "source"]
    table = {row[0]: row[1:] for row in rows[1:]}
    for k, set_name in enumerate(("target", "source")):
        result = stored["metrics"][set_name]
        for name, value in [*result["IoU"].items(), ("mIoU", result["mIoU"])]:
            assert table[name][k] == ("" if math.isnan(value) else f"{value:.4f}"), (set_name, name)
    markdown = (tmp_path / "metrics.md").read_text()
    assert f"**{stored['metrics']['target']['mIoU']:.2f}**" in markdown


def test_select_must_be_final_or_best(data_dir, run_dir, tmp_path):
    with pytest.raises(ConfigError, match="select must be"):
        _eval(data_dir, tmp_path, run_dir / "checkpoints/last.ckpt", "select=median")


def test_scoring_builds_no_training_stream_extras(make_cfg):
    from dastc.build import build_datamodule

    cfg = make_cfg("method=dastc")
    assert build_datamodule(cfg).rare_classes == 2 and build_datamodule(cfg).hist_match
    scoring = build_datamodule(cfg, training=False)  # no class index to build, no colours to match
    assert scoring.rare_classes == 0 and not scoring.hist_match


def test_dataset_override_scores_on_that_benchmark_when_its_classes_are_the_runs(data_dir, run_dir, tmp_path):
    stored_run, _ = _eval(data_dir, tmp_path / "stored", run_dir / "checkpoints/last.ckpt")
    # The same benchmark picked by name, with one of its settings changed from the command line.
    same, info = _eval(
        data_dir,
        tmp_path / "named",
        run_dir / "checkpoints/last.ckpt",
        "dataset=toy",
        "dataset.pin_memory=true",
    )
    assert same == stored_run and info["dataset"] == "toy"
    with pytest.raises(
        ConfigError, match=r"dataset=synthia scores 12 classes .* trained on toy with 8 classes"
    ):
        _eval(data_dir, tmp_path / "other", run_dir / "checkpoints/last.ckpt", "dataset=synthia")
