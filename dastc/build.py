"""Turning a composed config into the objects of a run. The entry points, tests and notebooks share it."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from dastc.data.datamodule import PairedClipDataModule
from dastc.errors import ConfigError
from dastc.methods.base import AdaptationMethod


def build_datamodule(cfg: DictConfig, training: bool = True) -> PairedClipDataModule:
    """The benchmark's DataModule. What the method asks of the training stream (rare-class clips, source-to-
    target histogram matching) and rare class sampling (``dataset.rcs``) are left out when ``training`` is
    False: scoring never reads them."""
    if not training:
        return instantiate(cfg.dataset, _recursive_=False, rcs=None)
    hist_match = bool(cfg.get("method", {}).get("hist_match", False))
    return instantiate(
        cfg.dataset, _recursive_=False, rare_classes=rare_classes_needed(cfg), hist_match=hist_match
    )


def rare_classes_needed(cfg: DictConfig) -> int:
    """Long-tail source clips per training sample the method pastes (docs/method.md,
    Rare-class pasting); 0 for methods without it or with it switched off."""
    fusion = cfg.get("method", {}).get("fusion") or {}
    if not fusion.get("rare_class_paste") or not (fusion.get("image") or fusion.get("feature")):
        return 0
    return int(fusion.get("rare_classes", 0))


def build_method(cfg: DictConfig, datamodule: PairedClipDataModule) -> AdaptationMethod:
    """The method's LightningModule around a freshly built student network."""
    student = instantiate(cfg.backbone)
    method = instantiate(
        cfg.method,
        student=student,
        num_classes=datamodule.num_classes,
        class_names=datamodule.class_names,
        eval_classes=datamodule.eval_classes,
        report_subsets=datamodule.report_subsets,
        val_names=datamodule.val_names,
        ignore_index=datamodule.ignore_index,
        _convert_="all",
    )
    method.run_config = portable_config(cfg)
    return method


def apply_speed_options(method: AdaptationMethod, model: DictConfig | dict) -> None:
    """``model.channels_last`` and ``model.compile`` on the student and the teacher's network. Compilation is
    in place (``nn.Module.compile``), so parameter names and checkpoints stay those of the plain network."""
    networks = [method.student, method.teacher.model]
    if method.teacher.initial is not None:  # the frozen start network labels the first steps
        networks.append(method.teacher.initial)
    if model.get("channels_last"):
        for network in networks:
            network.to(memory_format=torch.channels_last)
    if model.get("compile"):
        for network in networks:
            network.compile(
                mode=model.get("compile_mode", "default"), backend=model.get("compile_backend", "inductor")
            )


def portable_config(cfg: DictConfig) -> dict:
    """The run's config as plain containers, with ``paths`` resolved and everything else left as written, so
    that a checkpoint can be re-evaluated with other paths (eval replaces ``paths`` and resolves again)."""
    container = OmegaConf.to_container(cfg, resolve=False)
    container["paths"] = OmegaConf.to_container(cfg.paths, resolve=True)
    container["seed"] = cfg.seed
    return container


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    return [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]


def build_loggers(cfg: DictConfig, console: Console | None = None) -> list[Logger]:
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    for logger in loggers:
        if isinstance(logger, WandbLogger) and logger._offline and console is not None:
            console.print(
                f"W&B is logging offline into {Path(logger.save_dir) / 'wandb'}: upload it later with "
                "`wandb sync <that folder>/offline-run-*`, or set logger.wandb.offline=false to stream live."
            )
    return loggers


def rebuild_run(
    checkpoint: dict, paths: DictConfig, eval_model: str | None = None, dataset: DictConfig | None = None
):
    """A trained run's DataModule (for scoring: no training extras) and method, from the config stored in its
    checkpoint, with this command's ``paths``; ``eval_model`` overrides the network that scores, ``dataset``
    (a ``conf/dataset`` config with the run's classes) the benchmark it is scored on."""
    run_cfg = OmegaConf.create(checkpoint["dastc_config"])
    run_cfg.paths = OmegaConf.to_container(paths, resolve=True)  # this machine's data and outputs
    run_cfg.backbone.pretrained = None  # the checkpoint's weights replace the ImageNet ones: fetch nothing
    if eval_model:
        run_cfg.method.eval_model = eval_model
    if dataset is not None:
        run_cfg.dataset = replace_benchmark(run_cfg.dataset, dataset)
    datamodule = build_datamodule(run_cfg, training=False)
    return run_cfg, datamodule, build_method(run_cfg, datamodule)


def replace_benchmark(trained: DictConfig, chosen: DictConfig) -> DictConfig:
    """The benchmark config to score on instead of the one a run trained on; its classes must be the run's,
    since the network's output channels are the trained classes."""
    chosen = OmegaConf.create(OmegaConf.to_container(chosen, resolve=False))
    if list(chosen.class_names) != list(trained.class_names):
        raise ConfigError(
            f"dataset={chosen.name} scores {len(chosen.class_names)} classes {list(chosen.class_names)}, but "
            f"the checkpoint was trained on {trained.name} with {len(trained.class_names)} classes "
            f"{list(trained.class_names)}: pick a checkpoint trained in that class space, or leave dataset out"
        )
    return chosen
