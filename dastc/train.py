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
from dastc.report import report

# The EMA teacher is kept in eval mode on purpose; Lightning warns about any module in eval mode at fit start.
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")


def train(cfg: DictConfig) -> dict:
    """Fit, save ``checkpoints/last.ckpt``, validate it and write ``metrics.json``/``.md``; returns the metrics."""
    console = Console()
    use_job_output_dir(cfg)
    if cfg.get("model", {}).get("init_required") and not cfg.model.get("init_from"):
        raise ConfigError(
            "this configuration starts from an earlier stage: set model.init_from=<its run directory or "
            "checkpoint> (the DA-STC presets start from the TPS stage, method.md section 5)"
        )
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    out_dir = Path(cfg.paths.output_dir)
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), out_dir)
    if ckpt_path is not None:  # fail before building anything when the checkpoint cannot continue this run
        check_compatible(load_run_checkpoint(ckpt_path), cfg, ckpt_path)
        console.print(f"Continuing the run in {out_dir} from {ckpt_path}", highlight=False)
    datamodule = build_datamodule(cfg)
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
    trainer: L.Trainer = instantiate(
        cfg.trainer, callbacks=build_callbacks(cfg), logger=build_loggers(cfg, console) or False
    )
    trainer.fit(method, datamodule=datamodule, ckpt_path=ckpt_path)

    # The reported figure is always the final model (method.md section 7); save it before scoring it.
    trainer.save_checkpoint(out_dir / "checkpoints" / "last.ckpt", weights_only=False)
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
        report(console, out_dir, metrics, info, f"final checkpoint, step {trainer.global_step}")
        if method.replaced_clips:
            console.print(
                f"[yellow]{len(method.replaced_clips)} unreadable training clips were skipped; the "
                f"first: {method.replaced_clips[0]}[/yellow]"
            )
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    with user_errors():
        return train(cfg)["target"]["mIoU"]  # returned for sweepers that optimise it


if __name__ == "__main__":
    main()
