"""What every adaptation method shares: student + EMA teacher, SGD/poly, and target validation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import lightning as L
import torch
from torch import nn
from torchmetrics.classification import MulticlassConfusionMatrix

from dastc.methods.ema import EMATeacher
from dastc.methods.losses import upsample_to
from dastc.methods.optim import OptimConfig, make_poly_scheduler, make_sgd
from dastc.metrics.iou import iou_from_confusion, mean_iou


class AdaptationMethod(L.LightningModule):
    """Base LightningModule. A method subclasses it and implements :meth:`training_losses`.

    Validation scores the fused/current-frame prediction of ``eval_model`` (student or teacher) on every
    validation set, accumulating one confusion matrix per set over the whole set (method.md section 7), and
    logs ``val/mIoU`` (target, in %), ``val/IoU/<class>`` and, for extra sets, ``val_<name>/...``.
    """

    def __init__(
        self,
        student: nn.Module,
        num_classes: int,
        class_names: Sequence[str],
        optim: Mapping | None = None,
        eval_classes: Sequence[int] | None = None,
        val_names: Sequence[str] = ("target",),
        ema_momentum: float = 0.999,
        aux_weight: float = 0.1,
        eval_model: str = "student",
        ignore_index: int = 255,
    ):
        super().__init__()
        if eval_model not in ("student", "teacher"):
            raise ValueError(f"method.eval_model must be 'student' or 'teacher', got {eval_model!r}")
        self.student = student
        self.teacher = EMATeacher(student, ema_momentum)  # exists from the start: adaptation methods need it
        self.num_classes = num_classes
        self.class_names = list(class_names)
        self.eval_classes = list(eval_classes) if eval_classes is not None else list(range(num_classes))
        self.val_names = list(val_names)
        self.optim = OptimConfig(**dict(optim or {}))
        self.aux_weight = aux_weight
        self.eval_model = eval_model
        self.ignore_index = ignore_index
        self.val_confusion = nn.ModuleList(
            MulticlassConfusionMatrix(num_classes, ignore_index=ignore_index, validate_args=False)
            for _ in self.val_names
        )
        self.last_val_metrics: dict[str, dict] = {}
        self.run_config: dict | None = (
            None  # the run's config, stored in every checkpoint by on_save_checkpoint
        )

    # --- training -------------------------------------------------------------------------------------------
    def training_losses(self, batch: dict) -> dict[str, torch.Tensor]:
        """The method's weighted loss terms for one paired batch ``{"source": clip, "target": clip}``."""
        raise NotImplementedError

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        losses = self.training_losses(batch)
        total = torch.stack(list(losses.values())).sum()
        batch_size = batch["source"]["frames"].shape[0]
        self.log_dict(
            {f"train/{name}": value.detach() for name, value in losses.items()}, batch_size=batch_size
        )
        self.log("train/loss", total.detach(), prog_bar=True, batch_size=batch_size)
        return total

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        self.teacher.update(self.student)

    def configure_optimizers(self):
        optimizer = make_sgd(self.student, self.optim)
        horizon = self.optim.poly_horizon or self.trainer.max_steps
        scheduler = make_poly_scheduler(optimizer, horizon, self.optim.poly_power)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # --- validation -----------------------------------------------------------------------------------------
    def predict_clip(self, clip: dict, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Class ids [B, H, W] for the current frame of a clip batch; logits are upsampled bilinearly to
        ``size`` (default: the frames' size) before the argmax, as the evaluation protocol scores them."""
        model = self.teacher if self.eval_model == "teacher" else self.student
        out = model(clip["frames"], clip.get("flow"))
        return upsample_to(out.logits, size or clip["frames"].shape[-2:]).argmax(1)

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        labels = batch["labels"][:, -1]
        self.val_confusion[dataloader_idx].update(self.predict_clip(batch, labels.shape[-2:]), labels)

    def on_validation_epoch_end(self) -> None:
        metrics = {}
        for name, confusion in zip(self.val_names, self.val_confusion, strict=True):
            if not confusion.update_called:
                continue
            iou = iou_from_confusion(confusion.compute()) * 100.0
            confusion.reset()
            prefix = "val" if name == "target" else f"val_{name}"
            miou = mean_iou(iou, self.eval_classes).item()
            per_class = {self.class_names[c]: iou[c].item() for c in self.eval_classes}
            metrics[name] = {"mIoU": miou, "IoU": per_class}
            self.log(f"{prefix}/mIoU", miou, prog_bar=name == "target")
            self.log_dict({f"{prefix}/IoU/{cls}": value for cls, value in per_class.items()})
        self.last_val_metrics = metrics

    # --- checkpoints ----------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.run_config is not None:
            checkpoint["dastc_config"] = self.run_config
