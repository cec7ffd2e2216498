"""``callbacks.sample_panels``: every N training steps, and at each validation, draw what the method saw as
image panels (dastc.viz.panels) and hand them to every logger: W&B (the grid, plus the current frame with its
masks as W&B segmentation overlays), TensorBoard (the grid), and PNG files under ``save_dir`` whatever the
loggers (the CSV logger's companion)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from PIL import Image

from dastc.viz.colour import palette_for
from dastc.viz.panels import COLUMNS, LABEL_VIEWS, clip_panel, clip_views, frames_to_rgb


class SamplePanels(L.Callback):
    """Panels named after what the method recorded (``AdaptationMethod.record``): ``source`` (clip, labels,
    prediction), ``target`` (strongly augmented clip, teacher pseudo-labels, confidence), ``mix_s2t`` and
    ``mix_t2s`` (DA-STC's two mixed clips and their labels), ``mic`` (with ``method.mic.enabled``: the masked
    target pair and the pseudo-labels it learns), ``val_<set>`` (the first validation clip, its label and the
    prediction). Logged under ``panels/<name>`` at the step they were recorded."""

    def __init__(
        self,
        every_n_steps: int = 100,
        validation: bool = True,
        save_dir: str | Path | None = None,
        tile_width: int = 256,
    ):
        if every_n_steps < 0:
            raise ValueError(
                f"callbacks.sample_panels.every_n_steps must be >= 0 (0: never), got {every_n_steps}"
            )
        self.every_n_steps = every_n_steps
        self.validation = validation
        self.save_dir = Path(save_dir) if save_dir is not None else None
        self.tile_width = tile_width
        self._step = 0
        self._validated_at: int | None = None  # the final re-validation at the last step draws nothing new

    # --- when to record ---------------------------------------------------------------------------------------
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        step = trainer.global_step
        if self.every_n_steps and step % self.every_n_steps == 0 and trainer.is_global_zero:
            pl_module.visuals, self._step = {}, step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self._publish(trainer, pl_module)

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        step = trainer.global_step
        if (
            self.validation
            and not trainer.sanity_checking
            and trainer.is_global_zero
            and step != self._validated_at
        ):
            pl_module.visuals, self._step, self._validated_at = {}, step, step

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._publish(trainer, pl_module)

    # --- drawing and logging ----------------------------------------------------------------------------------
    def _publish(self, trainer, pl_module) -> None:
        visuals, pl_module.visuals = pl_module.visuals, None
        if not visuals:
            return
        palette = palette_for(pl_module.class_names)
        for name, record in visuals.items():
            panel = clip_panel(clip_views(record, palette), self.tile_width)
            self._log(trainer, pl_module, name, panel, record)

    def _log(self, trainer, pl_module, name: str, panel: np.ndarray, record: dict) -> None:
        key, step = f"panels/{name}", self._step
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key=key, images=[panel], step=step)
                frame, masks = current_frame_masks(record, pl_module.class_names)
                logger.log_image(key=f"masks/{name}", images=[frame], step=step, masks=[masks])
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image(key, panel, step, dataformats="HWC")
        if self.save_dir is not None:
            path = self.save_dir / name / f"step{step:06d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(panel).save(path)


def current_frame_masks(record: dict, class_names: list[str]) -> tuple[np.ndarray, dict]:
    """The recorded clip's current frame (uint8 H x W x 3) and its label-like views at that frame as W&B
    masks (``{"labels": {"mask_data": ..., "class_labels": ...}}``), resized to the frame's size."""
    frame = frames_to_rgb(record["frames"][-1:])[0]
    class_labels = {i: name for i, name in enumerate(class_names)} | {255: "ignore"}
    masks = {}
    for key in LABEL_VIEWS:
        if key in record:
            mask = record[key][-1].cpu().numpy().astype(np.uint8)
            if mask.shape != frame.shape[:2]:
                mask = np.asarray(Image.fromarray(mask).resize(frame.shape[1::-1], Image.NEAREST))
            masks[COLUMNS[key]] = {"mask_data": mask, "class_labels": class_labels}
    return frame, masks
