"""``python -m dastc.train [overrides]``: train a method, then score the final checkpoint on target val.

With no arguments: DA-STC, after a source-only warm-up, on the embedded toy benchmark (generated on first use),
on CPU in a few minutes. See conf/train.yaml for the groups and README.md for examples.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig
from rich.console import Console

from dastc.build import apply_speed_options, build_callbacks, build_datamodule, build_loggers, build_method
from dastc.checkpoint import check_compatible, init_weights_from, load_run_checkpoint, resolve_ckpt_path
from dastc.cli import user_errors
from dastc.config import use_job_output_dir
from dastc.errors import ConfigError
from dastc.methods.feature_distance import warn_without_imagenet
from dastc.models.weights import resolve_pretrained
from dastc.recipe import is_two_stage, train_two_stages
from dastc.report import report
from dastc.schema import validate_config

# The EMA teacher is kept in eval mode on purpose; Lightning warns about any module in eval mode at fit start.
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")


def train(cfg: DictConfig) -> dict:
    """Train the configured method and score its final checkpoint (``fit``); DA-STC on a benchmark whose recipe
    starts with TPS runs both stages in this run (dastc.recipe). Returns the final metrics."""
    validate_config(cfg)  # a bad value is one sentence before anything is built
    console = Console()
    use_job_output_dir(cfg)
    if cfg.get("model", {}).get("init_required") and not cfg.model.get("init_from"):
        raise ConfigError(
            "this configuration starts from an earlier stage: set model.init_from=<its run directory or "
            "checkpoint> (DA-STC presets start from a TPS run: docs/method.md, DA-STC teacher and stage 2)"
        )
    resolve_pretrained(cfg)  # ImageNet weights fetched (or the run stopped) before any data is read
    if is_two_stage(cfg):
        return train_two_stages(cfg, console)
    return fit(cfg, console)


def fit(cfg: DictConfig, console: Console, stage: str | None = None) -> dict:
    """Fit, save ``checkpoints/last.ckpt``, validate it and write ``metrics.json``/``.md`` into
    ``paths.output_dir``; returns the metrics. ``stage`` names the recipe stage this is, in the report."""
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    out_dir = Path(cfg.paths.output_dir)
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), out_dir)
    if ckpt_path is not None:  # fail before building anything when the checkpoint cannot continue this run
        check_compatible(load_run_checkpoint(ckpt_path), cfg, ckpt_path)
        console.print(f"Continuing the run in {out_dir} from {ckpt_path}", highlight=False)
    datamodule = build_datamodule(cfg)
    warn_without_imagenet(cfg)
    method = build_method(cfg, datamodule)
    init_from = cfg.get("model", {}).get("init_from")
    if init_from and ckpt_path is None:  # a resumed run restores its own weights instead
        loaded = init_weights_from(method, init_from, cfg)
        console.print(
            f"Initialised {len(loaded['loaded'])} weight tensors from {init_from}"
            + (
                f"; {len(loaded['kept'])} keep their initialisation: {', '.join(loaded['kept'][:4])}"
                if loaded["kept"]
                else ""
            ),
            highlight=False,
        )
    apply_speed_options(method, cfg.get("model", {}))
    callbacks = build_callbacks(cfg)
    if "target" not in datamodule.val_names:  # no val/mIoU to pick a best checkpoint by
        callbacks = [c for c in callbacks if not str(getattr(c, "monitor", None) or "").startswith("val/")]
    if not datamodule.val_names:  # no val loader, on purpose: Lightning's warning about it would only confuse
        warnings.filterwarnings("ignore", message=r"Total length of `list` across ranks is zero")
    trainer: L.Trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=build_loggers(cfg, console) or False
    )
    trainer.fit(method, datamodule=datamodule, ckpt_path=ckpt_path)

    # The reported figure is always the final model (docs/benchmarks.md, Evaluation protocol); save it before
    # scoring it.
    trainer.save_checkpoint(out_dir / "checkpoints" / "last.ckpt", weights_only=False)
    if datamodule.val_names:  # dataset.val=null and no extra_val: nothing to score
        trainer.validate(method, datamodule=datamodule, verbose=False)
    metrics = method.last_val_metrics
    if trainer.is_global_zero:
        info = {
            "dataset": datamodule.name,
            "method": cfg.method._target_.rsplit(".", 1)[-1],
            "checkpoint": str(out_dir / "checkpoints" / "last.ckpt"),
            "step": trainer.global_step,
            "selection": "final checkpoint",
            "bad_training_clips_skipped": len(method.replaced_clips),
        }
        label = f"final checkpoint, step {trainer.global_step}"
        report(console, out_dir, metrics, info, label if stage is None else f"{stage}, {label}")
        if "target" not in datamodule.val_names:
            console.print(
                "There is no labelled target validation set (dataset.val is null), so no target mIoU: the "
                f"training losses and sample panels of this run are in {out_dir}.",
                highlight=False,
                soft_wrap=True,
            )
        if method.replaced_clips:
            console.print(
                f"[yellow]{len(method.replaced_clips)} unreadable training clips were skipped; the "
                f"first: {method.replaced_clips[0]}[/yellow]"
            )
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    with user_errors():
        # returned for sweepers that optimise it; NaN without a labelled target validation set
        return train(cfg).get("target", {}).get("mIoU", float("nan"))


if __name__ == "__main__":
    main()
