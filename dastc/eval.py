"""``python -m dastc.eval ckpt_path=RUN/checkpoints/last.ckpt``: score a checkpoint on target validation.

The benchmark, network and method are rebuilt from the config stored in the checkpoint; ``paths.data_dir``
and the ``trainer.*`` hardware settings come from this command, and ``dataset=NAME`` picks the benchmark to
score on (one with the checkpoint's classes; by default the one it trained on). Per-class IoU is written as
``metrics.json`` and ``metrics.md`` into ``RUN/eval/<time>/``.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.utils import instantiate
from lightning.pytorch.callbacks import RichProgressBar
from omegaconf import DictConfig
from rich.console import Console

from dastc import config  # noqa: F401 - registers the config resolvers
from dastc.build import rebuild_run
from dastc.checkpoint import load_run_checkpoint
from dastc.cli import user_errors
from dastc.errors import CheckpointError, ConfigError
from dastc.report import report
from dastc.schema import validate_config


def run_checkpoints(ckpt_path: str | Path) -> list[Path]:
    """Every checkpoint a run saved (``step*.ckpt`` in step order, then ``last.ckpt``), from one of them.
    ``evaluate`` scores each step once: a ``last.ckpt`` of the same step as a periodic checkpoint is skipped."""
    folder = Path(ckpt_path).absolute().parent
    steps = sorted(folder.glob("step*.ckpt"))
    return steps + ([folder / "last.ckpt"] if (folder / "last.ckpt").is_file() else [])


def evaluate(cfg: DictConfig) -> dict:
    """Score ``ckpt_path`` (``select=final``), or every checkpoint of its run and report the best on target val
    (``select=best``, labelled as selected on val: docs/benchmarks.md, Evaluation protocol)."""
    validate_config(cfg)  # a bad trainer or dataset value is one sentence before anything is loaded
    if cfg.select not in ("final", "best"):
        raise ConfigError(f"select must be 'final' or 'best', got {cfg.select!r}")
    console = Console()
    checkpoint = load_run_checkpoint(cfg.ckpt_path)
    run_cfg, datamodule, method = rebuild_run(
        checkpoint, cfg.paths, cfg.get("eval_model"), cfg.get("dataset")
    )
    if "target" not in datamodule.val_names:
        raise ConfigError(
            f"dataset={datamodule.name} has no labelled target validation set (dataset.val is null): give it "
            f"one (dataset={datamodule.name} dataset/val=cityscapes dataset.val.root=<labelled frames in the "
            "Cityscapes layout>) or score on a benchmark in the run's class space (dataset=synthia)"
        )
    trainer = instantiate(cfg.trainer, callbacks=[RichProgressBar()])
    paths = run_checkpoints(cfg.ckpt_path) if cfg.select == "best" else [Path(cfg.ckpt_path)]
    scored = []
    for path in paths:
        stored = checkpoint if path == Path(cfg.ckpt_path) else load_run_checkpoint(path)
        if any(step == stored.get("global_step") for _, step, _ in scored):
            # last.ckpt written at the step of the last periodic checkpoint holds the same weights: score once
            continue
        try:
            method.load_run_weights(stored)
        except RuntimeError as err:
            raise CheckpointError(
                f"checkpoint {path} does not fit the network of its run's config: {err}"
            ) from None
        trainer.validate(method, datamodule=datamodule, verbose=False)
        scored.append((path, stored.get("global_step"), method.last_val_metrics))
    path, step, metrics = max(scored, key=lambda item: item[2]["target"]["mIoU"])
    if trainer.is_global_zero:
        info = {
            "dataset": datamodule.name,
            "method": run_cfg.method._target_.rsplit(".", 1)[-1],
            "checkpoint": str(path.absolute()),
            "step": step,
            "selection": "given checkpoint"
            if cfg.select == "final"
            else f"best of {len(scored)} checkpoints, selected on target val",
            "eval_model": run_cfg.method.get("eval_model", "student"),
        }
        if cfg.select == "best":
            info["candidates"] = [
                {"checkpoint": str(p.absolute()), "step": s, "target_mIoU": m["target"]["mIoU"]}
                for p, s, m in scored
            ]
        label = (
            str(path) if cfg.select == "final" else f"best of {len(scored)} checkpoints on val, step {step}"
        )
        report(console, cfg.paths.output_dir, metrics, info, label)
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> float:
    with user_errors():
        return evaluate(cfg)["target"]["mIoU"]


if __name__ == "__main__":
    main()
