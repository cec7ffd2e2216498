"""The beyond-the-paper presets (issue 18): the image-DA baseline per frame (DAFormer/HRDA+MIC style) and DA-STC
with the same ingredients, on SYNTHIA-Seq and VIPER: they carry the papers' recipe and train a few steps on the
fixtures (MiT-B0 instead of B5, random weights, tiny frames)."""

import csv
import math

import pytest
from real_fixtures import SYNTHIA_TINY, VIPER_TINY, write_synthia_benchmark, write_viper_benchmark

from dastc.config import compose_config
from dastc.train import train

# DA-STC mixes source into target clips: VIPER's 32x48 fixture frames are read at the target's 32x64.
VIPER_MIXABLE = [*(o for o in VIPER_TINY if "source" not in o), "dataset.source.dataset.size=[32,64]"]
BENCHMARKS = {
    "synthia": (write_synthia_benchmark, SYNTHIA_TINY),
    "viper": (write_viper_benchmark, VIPER_MIXABLE),
}


def _terms(run_dir) -> set[str]:
    rows = list(csv.DictReader((run_dir / "csv" / "metrics.csv").open()))
    return {key for row in rows for key, value in row.items() if key.startswith("train/") and value}


@pytest.mark.parametrize("benchmark", ["synthia", "viper"])
@pytest.mark.parametrize("kind", ["hrda_mic", "dastc_hrda_mic"])
def test_the_presets_carry_the_image_da_recipe(benchmark, kind):
    cfg = compose_config("train", [f"experiment={benchmark}2city_{kind}"])
    optim, method = cfg.method.optim, cfg.method
    assert (cfg.dataset.name, cfg.backbone.arch, cfg.backbone.encoder_name) == (
        benchmark,
        "Segformer",
        "mit_b5",
    )
    assert (optim.name, optim.lr, optim.head_lr_mult, optim.lr_warmup_steps) == ("adamw", 6e-5, 10.0, 1500)
    assert (method.teacher.momentum, cfg.dataset.batch_size, cfg.trainer.max_steps) == (0.999, 2, 40000)
    assert method.mic.enabled and method.fdist.enabled and cfg.dataset.rcs.enabled
    assert cfg.backbone.multires is not None and cfg.backbone.multires.context_scale == 0.5
    assert not cfg.dataset.schedule.two_stage and method.warmup_steps == 0
    if kind == "hrda_mic":  # per frame, ClassMix only
        assert cfg.backbone.temporal == "current_frame" and method.pseudo_labels == "per_frame"
        assert (
            list(method.fusion.directions) == ["s2t"]
            and not method.fusion.feature
            and not method.align.enabled
        )
    else:  # DA-STC whole
        assert cfg.backbone.temporal == "flow_fusion" and method.pseudo_labels == "temporal"
        assert (
            list(method.fusion.directions) == ["s2t", "t2s"]
            and method.fusion.feature
            and method.align.enabled
        )


@pytest.mark.parametrize("benchmark", ["synthia", "viper"])
@pytest.mark.parametrize("kind", ["hrda_mic", "dastc_hrda_mic"])
def test_a_few_steps_of_each_preset_train_on_the_fixtures(tmp_path, benchmark, kind):
    write, tiny = BENCHMARKS[benchmark]
    data_dir = write(tmp_path / "data")
    out = tmp_path / "run"
    overrides = [
        f"experiment={benchmark}2city_{kind}",
        f"paths.data_dir={data_dir}",
        "backbone.encoder_name=mit_b0",
        "backbone.pretrained=null",  # tests never download
        "trainer=cpu",
        "trainer.precision=32-true",
        "trainer.max_steps=2",
        "trainer.log_every_n_steps=1",
        "dataset.schedule.val_every=2",
        "dataset.schedule.feature_fusion_start=0",
        "dataset.rcs.min_pixels=1",
        "method.mic.patch_size=8",
        "method.optim.lr_warmup_steps=1",
        "dataset.num_workers=0",
        "dataset.pin_memory=false",
        "callbacks=none",
        *tiny,
    ]
    metrics = train(compose_config("train", overrides, output_dir=out))
    assert 0 <= metrics["target"]["mIoU"] <= 100
    terms = _terms(out)
    assert {"train/target_mic", "train/source_fdist", "train/mix_s2t_ce"} <= terms
    if kind == "dastc_hrda_mic":
        assert {"train/mix_t2s_ce", "train/feat_s2t_ce", "train/feat_t2s_ce", "train/align"} <= terms
    else:
        assert not terms & {"train/mix_t2s_ce", "train/feat_s2t_ce", "train/align"}
    rows = list(csv.DictReader((out / "csv" / "metrics.csv").open()))
    assert all(math.isfinite(float(r["train/loss"])) for r in rows if r.get("train/loss"))
