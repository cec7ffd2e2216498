"""``python -m dastc.eval ckpt_path=RUN/checkpoints/last.ckpt``: score a checkpoint on target validation.

The benchmark, network and method are rebuilt from the config stored in the checkpoint; ``paths.data_dir``
and the ``trainer.*`` hardware settings come from this command. Per-class IoU is written as
``metrics.json`` and ``metrics.md`` into ``RUN/eval/<time>/``.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.utils import instantiate
from lightning.pytorch.callbacks import RichProgressBar
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from dastc import config  # noqa: F401 - registers the config resolvers
from dastc.build import build_datamodule, build_method
from dastc.checkpoint import load_run_checkpoint
from dastc.cli import user_errors
from dastc.errors import CheckpointError
from dastc.report import report


def evaluate(cfg: DictConfig) -> dict:
    console = Console()
    checkpoint = load_run_checkpoint(cfg.ckpt_path)
    run_cfg = OmegaConf.create(checkpoint["dastc_config"])
    # Data and outputs of this command, not of the training machine.
    run_cfg.paths = OmegaConf.to_container(cfg.paths, resolve=True)
    if cfg.get("eval_model"):
        run_cfg.method.eval_model = cfg.eval_model
    datamodule = build_datamodule(run_cfg)
    method = build_method(run_cfg, datamodule)
    try:
        method.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(
            f"checkpoint {cfg.ckpt_path} does not fit the network of its own config: {err}"
        ) from None
    trainer = instantiate(cfg.trainer, callbacks=[RichProgressBar()])
    trainer.validate(method, datamodule=datamodule, verbose=False)
    metrics = method.last_val_metrics
    if trainer.is_global_zero:
        info = {
            "dataset": datamodule.name,
            "method": run_cfg.method._target_.rsplit(".", 1)[-1],
            "checkpoint": str(Path(cfg.ckpt_path).absolute()),
            "step": checkpoint.get("global_step"),
            "selection": "given checkpoint",
            "eval_model": run_cfg.method.get("eval_model", "student"),
        }
        report(console, cfg.paths.output_dir, metrics, info, str(cfg.ckpt_path))
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> float:
    with user_errors():
        return evaluate(cfg)["target"]["mIoU"]


if __name__ == "__main__":
    main()
