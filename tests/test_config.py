from pathlib import Path

import lightning as L
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from dastc.build import build_callbacks, build_datamodule, build_loggers, build_method
from dastc.config import CONFIG_DIR, run_dir_of

GROUPS = ["dataset", "backbone", "method", "trainer", "logger", "callbacks", "experiment"]


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
