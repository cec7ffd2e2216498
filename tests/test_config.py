from pathlib import Path

import lightning as L
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from dastc.build import build_callbacks, build_datamodule, build_loggers, build_method
from dastc.config import CONFIG_DIR, compose_config, run_dir_of
from dastc.errors import ConfigError
from dastc.train import train

GROUPS = ["dataset", "backbone", "method", "multires", "trainer", "logger", "callbacks", "experiment"]


def _options(group):
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in _options(g)])
def test_every_config_option_composes_and_resolves(make_cfg, group, option):
    cfg = make_cfg(f"{group}={option}")
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    assert cfg.paths.output_dir.endswith("run")


def test_every_group_named_by_the_issue_exists():
    for group in GROUPS + ["paths", "hydra"]:
        assert _options(group), group
    assert (CONFIG_DIR / "train.yaml").is_file() and (CONFIG_DIR / "eval.yaml").is_file()


def test_eval_config_composes(make_cfg, tmp_path):
    cfg = make_cfg(f"ckpt_path={tmp_path}/myrun/checkpoints/last.ckpt", config_name="eval")
    cfg = OmegaConf.to_container(cfg, resolve=True)
    assert cfg["trainer"]["_target_"] == "lightning.pytorch.Trainer"


def test_run_dir_of_a_checkpoint():
    assert run_dir_of("/a/run/checkpoints/last.ckpt") == "/a/run"
    assert run_dir_of("/a/run/model.ckpt") == "/a/run"


@pytest.mark.parametrize("trainer", ["default", "cpu"])
def test_default_objects_instantiate(make_cfg, trainer):
    cfg = make_cfg(f"trainer={trainer}", "logger=many")
    datamodule = build_datamodule(cfg)
    method = build_method(cfg, datamodule)
    assert isinstance(method, L.LightningModule) and method.num_classes == 8
    assert method.run_config["paths"]["data_dir"] == cfg.paths.data_dir
    callbacks = build_callbacks(cfg)
    loggers = build_loggers(cfg)
    assert {type(c).__name__ for c in callbacks} >= {"ModelCheckpoint", "RichProgressBar"}
    assert {type(lg).__name__ for lg in loggers} == {"CSVLogger", "TensorBoardLogger"}
    trainer_obj = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)
    assert trainer_obj.max_steps == cfg.dataset.schedule.max_steps
    assert Path(trainer_obj.default_root_dir) == Path(cfg.paths.output_dir)


# The paper's settings per benchmark (docs/method.md), checked line by line against the presets;
# lambda_T and the strong target augmentation per stage (TPS, ECCV 2022; the authors' released DA-STC loop).
PAPER = {
    "synthia": {
        "lr": 2.5e-4,
        "lambda_target": {"tps": 1.0, "dastc": 1.0},
        "long_tail": [3, 4, 5, 6, 10],
        "rare": 2,
        "strong": {"tps": True, "dastc": True},
    },
    "viper": {
        "lr": 1.0e-4,
        "lambda_target": {"tps": 0.1, "dastc": 0.2},
        "long_tail": [3, 4, 5, 7, 13, 14],
        "rare": 3,
        "strong": {"tps": True, "dastc": False},
    },
}


@pytest.mark.parametrize("benchmark", ["synthia", "viper"])
@pytest.mark.parametrize("stage", ["tps", "dastc"])
def test_paper_presets_hold_the_papers_settings(benchmark, stage):
    extra = ["model.init_from=outputs/tps"] if stage == "dastc" else []
    cfg = compose_config("train", [f"experiment={benchmark}2city_{stage}", *extra])
    paper, schedule, method = PAPER[benchmark], cfg.dataset.schedule, cfg.method
    assert cfg.dataset.name == benchmark and cfg.seed == 1234
    assert cfg.backbone._target_.endswith("accel_deeplabv2") and cfg.backbone.depth == 101
    assert cfg.backbone.head == ("aspp" if stage == "tps" else "deeplabv2")
    assert cfg.backbone.weights_format == "auto" and method.hist_match  # see test_pretrained.py
    assert cfg.trainer.max_steps == 40000 and cfg.trainer.accelerator == "gpu"
    assert cfg.dataset.batch_size == 1 and schedule.ckpt_every == 1000
    assert method.optim.lr == paper["lr"] and method.optim.head_lr_mult == 10.0
    assert method.optim.poly_horizon == 250000 and method.optim.poly_power == 0.9
    assert method.optim.momentum == 0.9 and method.optim.weight_decay == 5e-4
    assert method.aux_weight == 0.1 and method.lambda_target == paper["lambda_target"][stage]
    assert method.strong_aug == paper["strong"][stage]
    assert method.flip_prob == 0.5 and method.warmup_steps == 0
    assert list(method.rescale) == [0.8, 1.2] and method.rescale_multiple == 8
    # TPS labels with the student itself; DA-STC with the paper's mean teacher.
    assert method.teacher.mode == "ema" and method.teacher.momentum == (0.0 if stage == "tps" else 0.999)
    assert cfg.dataset.source.augment.hflip_p == cfg.dataset.target.augment.hflip_p == 0.0
    assert cfg.dataset.target.dataset.size == [512, 1024] and cfg.dataset.val.size == [512, 1024]
    assert cfg.dataset.target.dataset.num_frames == 3 and cfg.dataset.source.dataset.num_frames == 2
    if stage == "dastc":
        assert cfg.model.init_from == "outputs/tps" and cfg.backbone.pretrained is None
        fusion, align = method.fusion, method.align
        assert fusion.image and fusion.feature and fusion.rare_class_paste
        assert fusion.feature_start == 8000 and fusion.alpha == 0.3 and fusion.target_threshold == 0.9
        assert fusion.source_classes == 2 and fusion.target_classes == 2
        assert list(fusion.long_tail) == paper["long_tail"] and fusion.rare_classes == paper["rare"]
        assert align.enabled and align.weight == 0.01 and align.min_pixels == 5 and align.second_pass
        assert align.temperature == 0.1
    else:
        assert cfg.backbone.pretrained == "imagenet"  # the Caffe file when it is there (test_pretrained.py)


def test_a_dastc_preset_without_its_tps_stage_says_so(tmp_path):
    cfg = compose_config("train", ["experiment=synthia2city_dastc"], output_dir=tmp_path / "run")
    with pytest.raises(ConfigError, match="model.init_from"):
        train(cfg)
