"""What every adaptation method shares: student + EMA teacher, SGD/poly, and target validation."""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from torch import nn
from torchmetrics.classification import MulticlassConfusionMatrix

from dastc.errors import DastcError
from dastc.methods.ema import EMATeacher
from dastc.methods.feature_distance import FeatureDistance
from dastc.methods.losses import segmentation_loss, upsample_to
from dastc.methods.optim import OptimConfig, make_optimizer, make_poly_scheduler
from dastc.metrics.iou import iou_from_confusion, mean_iou

log = logging.getLogger(__name__)


def _numpy_state_as_tensors() -> tuple:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)


class TrainingDivergedError(DastcError):
    """Losses or gradients stayed non-finite for too many consecutive steps."""


class AdaptationMethod(L.LightningModule):
    """Base LightningModule. A method subclasses it and implements :meth:`training_losses`.

    Validation scores the fused/current-frame prediction of ``eval_model`` (student or teacher) on every
    validation set, accumulating one confusion matrix per set over the whole set (docs/benchmarks.md,
    Evaluation protocol), and logs ``val/mIoU`` (target, in %), ``val/IoU/<class>``, ``val/<subset>`` for each
    of ``report_subsets`` (a mean over fewer classes, e.g. SYNTHIA's 13-class mIoU) and, for extra sets,
    ``val_<name>/...``.
    """

    def __init__(
        self,
        student: nn.Module,
        num_classes: int,
        class_names: Sequence[str],
        optim: Mapping | None = None,
        eval_classes: Sequence[int] | None = None,
        report_subsets: Mapping[str, Sequence[int]] | None = None,
        val_names: Sequence[str] = ("target",),
        teacher: Mapping | None = None,
        aux_weight: float = 0.1,
        eval_model: str = "student",
        ignore_index: int = 255,
        max_bad_steps: int = 5,
        hist_match: bool = False,
        fdist: Mapping | None = None,
    ):
        super().__init__()
        if eval_model not in ("student", "teacher"):
            raise ValueError(f"method.eval_model must be 'student' or 'teacher', got {eval_model!r}")
        self.student = student
        # DAFormer's ImageNet feature distance (method.fdist): its frozen encoder is copied now, before
        # model.init_from can overwrite the student's ImageNet weights; a submodule, so it moves with the method.
        fdist = dict(fdist or {})
        self.fdist = (
            FeatureDistance(student, class_names, ignore_index=ignore_index, **fdist)
            if fdist.pop("enabled", False)
            else None
        )
        # Exists from the start (adaptation methods need it); method.teacher = {mode, momentum, switch_step}.
        self.teacher = EMATeacher(student, **dict(teacher or {}))
        self.num_classes = num_classes
        self.class_names = list(class_names)
        self.eval_classes = list(eval_classes) if eval_classes is not None else list(range(num_classes))
        self.report_subsets = {name: list(classes) for name, classes in (report_subsets or {}).items()}
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
        # The run's config, stored in every checkpoint by on_save_checkpoint.
        self.run_config: dict | None = None
        self.max_bad_steps = max_bad_steps
        # Source-to-target histogram matching happens in the data pipeline, which reads this option from the
        # method's config (dastc.build.build_datamodule); kept here so that the method records it.
        self.hist_match = hist_match
        self.bad_steps = 0  # consecutive steps skipped for non-finite losses or gradients
        self.replaced_clips: list[str] = []  # training clips skipped as unreadable (dataset.on_bad_clip=skip)
        self._skip_step = False
        self._pending_rng: dict | None = None
        # Sample clips for the panels (dastc.viz.panel_callback): None, or a dict being filled this step.
        self.visuals: dict[str, dict[str, torch.Tensor]] | None = None
        self._step_override: int | None = None  # sample_visuals: replay a step outside a Trainer

    @property
    def step(self) -> int:
        """The training step the method is at: the Trainer's, or the one ``sample_visuals`` replays."""
        return self.global_step if self._step_override is None else self._step_override

    # --- sample panels ----------------------------------------------------------------------------------------
    @property
    def recording(self) -> bool:
        """Whether this step keeps sample clips for the panels (a SamplePanels callback asked for them)."""
        return self.visuals is not None

    def record(self, name: str, **tensors: torch.Tensor) -> None:
        """Keep the first clip of a batch's tensors under ``name`` for the panels: ``frames`` [B, T, 3, H, W]
        and label-like ``labels``/``pseudo``/``prediction`` or ``confidence`` [B, T', H, W] of the last T'
        frames. Detached copies only: recording changes no result and draws no random number."""
        if self.visuals is not None and name not in self.visuals:
            self.visuals[name] = {k: v[0].detach().cpu() for k, v in tensors.items()}

    @torch.no_grad()
    def sample_visuals(self, batch: dict, step: int) -> dict[str, dict[str, torch.Tensor]]:
        """What a training step at ``step`` computes for the panels (source prediction, pseudo-labels, mixed
        clips; see ``record``) for one paired training batch, without training: no gradient, no update. For
        notebooks and scripts that look at a trained run; call ``eval()`` first for deterministic views."""
        self.visuals, self._step_override = {}, step
        try:
            self.training_losses(batch)
            return self.visuals
        finally:
            self.visuals, self._step_override = None, None

    def predicted_classes(self, out, size: tuple[int, int]) -> torch.Tensor:
        """Class ids [B, H, W] of a network output, logits upsampled bilinearly to ``size`` first."""
        return upsample_to(out.logits.detach(), size).argmax(1)

    # --- training -------------------------------------------------------------------------------------------
    def training_losses(self, batch: dict) -> dict[str, torch.Tensor]:
        """The method's weighted loss terms for one paired batch ``{"source": clip, "target": clip}``."""
        raise NotImplementedError

    def ce(
        self,
        out,
        labels: torch.Tensor,
        aux_labels: torch.Tensor | None = None,
        aux: bool = True,
        weights: torch.Tensor | None = None,
    ):
        """Main + ``aux_weight`` x auxiliary cross-entropy of a network output against [B, H, W] labels (the
        auxiliary head against ``aux_labels`` when given); ``aux=False``: the main head's alone; ``weights`` [B]
        weight each image's pixels."""
        weight = self.aux_weight if aux else 0.0
        return segmentation_loss(out, labels, weight, self.ignore_index, aux_labels, weights)

    def source_loss(self, source: dict) -> tuple:
        """The student's output on the source clips and its losses on their current frame: ``source_ce`` and,
        with ``method.fdist`` on, ``source_fdist`` (the ImageNet feature distance of that same output)."""
        out = self.student(source["frames"], source.get("flow"))
        if self.recording:
            prediction = self.predicted_classes(out, source["labels"].shape[-2:])[:, None]
            self.record("source", frames=source["frames"], labels=source["labels"], prediction=prediction)
        labels = source["labels"][:, -1]
        losses = {"source_ce": self.ce(out, labels)}
        if self.fdist is not None:
            losses["source_fdist"] = self.fdist(source["frames"][:, -1], out.bottleneck, labels)
        return out, losses

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor | None:
        self._count_replaced_clips(batch)
        # Batch-norm statistics move during the forward pass; a skipped step must not keep what it did to them.
        buffers = {k: v.clone() for k, v in self.student.named_buffers()}
        losses = self.training_losses(batch)
        bad = [name for name, value in losses.items() if not torch.isfinite(value).all()]
        if bad:  # skip the step: no backward, no optimiser step, no teacher update
            with torch.no_grad():
                for name, value in self.student.named_buffers():
                    value.copy_(buffers[name])
            self._bad_step(f"loss {', '.join(bad)} is not finite")
            return None
        total = torch.stack(list(losses.values())).sum()
        batch_size = batch["source"]["frames"].shape[0]
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()}, batch_size=batch_size)
        self.log("train/loss", total.detach(), prog_bar=True, batch_size=batch_size)
        return total

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        """Run the step (forward + backward), then step the optimiser and the EMA teacher only when losses and
        gradients are finite. A skipped step still counts towards ``trainer.max_steps`` (Lightning counts steps
        taken, not updates made) and its batch is consumed."""
        self._skip_step = False
        optimizer_closure()
        if self._skip_step:
            return
        bad = [
            n
            for n, p in self.student.named_parameters()
            if p.grad is not None and not p.grad.isfinite().all()
        ]
        if bad:
            optimizer.zero_grad()
            more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
            self._bad_step(f"gradient of {bad[0]}{more} is not finite")
            return
        optimizer.step()
        self.teacher.update(self.student)  # here, before a checkpoint of this step can be written
        self.bad_steps = 0

    def _bad_step(self, what: str) -> None:
        self._skip_step = True
        self.bad_steps += 1
        step = self.trainer.global_step if self._trainer is not None else 0
        if self.bad_steps >= self.max_bad_steps:
            raise TrainingDivergedError(
                f"{what} for {self.bad_steps} consecutive steps (at step {step}): training stopped; the last good "
                "checkpoint is this run's checkpoints/last.ckpt (lower the lr or check the data)"
            )
        log.warning(
            "skipping step %d: %s (%d in a row, the run stops at %d)",
            step,
            what,
            self.bad_steps,
            self.max_bad_steps,
        )

    def _count_replaced_clips(self, batch: dict) -> None:
        clips = [batch["source"], batch["target"], *batch.get("rare", {}).get("clips", [])]
        for clip in clips:
            self.replaced_clips += [meta["replaced"] for meta in clip["meta"] if "replaced" in meta]
        if self.replaced_clips:
            self.log("train/bad_clips_skipped", float(len(self.replaced_clips)), reduce_fx="max")

    def on_fit_start(self) -> None:
        # Every rank built the networks from the same seed (the teacher copies the student before DDP syncs
        # it); from here on each rank draws its own dropout masks and augmentation numbers.
        if self.trainer.world_size > 1 and self.run_config is not None:
            seed = int(
                np.random.SeedSequence([self.run_config["seed"], self.global_rank]).generate_state(1)[0]
            )
            random.seed(seed)
            np.random.seed(seed)
            torch.manual_seed(seed)

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        # A resumed run gets back the random state it had when its checkpoint was written, applied now that the
        # data loaders have started, so that it continues exactly like the uninterrupted run.
        if self._pending_rng is not None:
            rng, self._pending_rng = self._pending_rng, None
            random.setstate(rng["python"])
            name, keys, pos, has_gauss, cached = rng["numpy"]
            np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
            torch.set_rng_state(rng["torch"])
            if torch.cuda.is_available() and rng.get("cuda") is not None:
                torch.cuda.set_rng_state_all(rng["cuda"])

    def configure_optimizers(self):
        optimizer = make_optimizer(self.student, self.optim)
        horizon = self.optim.poly_horizon or self.trainer.max_steps
        scheduler = make_poly_scheduler(optimizer, horizon, self.optim.poly_power, self.optim.lr_warmup_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # --- validation -----------------------------------------------------------------------------------------
    def predict_clip(self, clip: dict, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Class ids [B, H, W] for the current frame of a clip batch; logits are upsampled bilinearly to
        ``size`` (default: the frames' size) before the argmax, as the evaluation protocol scores them."""
        model = self.teacher if self.eval_model == "teacher" else self.student
        out = model(clip["frames"], clip.get("flow"))
        return self.predicted_classes(out, size or clip["frames"].shape[-2:])

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        labels = batch["labels"][:, -1]
        prediction = self.predict_clip(batch, labels.shape[-2:])
        self.val_confusion[dataloader_idx].update(prediction, labels)
        if self.recording and batch_idx == 0:
            name = self.val_names[dataloader_idx]
            self.record(
                f"val_{name}", frames=batch["frames"], labels=labels[:, None], prediction=prediction[:, None]
            )

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
            subsets = {sub: mean_iou(iou, classes).item() for sub, classes in self.report_subsets.items()}
            metrics[name] = {"mIoU": miou, **subsets, "IoU": per_class}
            self.log(f"{prefix}/mIoU", miou, prog_bar=name == "target")
            self.log_dict({f"{prefix}/{sub}": value for sub, value in subsets.items()})
            self.log_dict({f"{prefix}/IoU/{cls}": value for cls, value in per_class.items()})
        self.last_val_metrics = metrics

    # --- checkpoints ----------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.run_config is not None:
            checkpoint["dastc_config"] = self.run_config
        if self.teacher.initial is not None:  # the frozen start network labels: how to rebuild it
            checkpoint["dastc_initial_labeller"] = self.teacher.initial_config
        state = {
            "python": random.getstate(),
            # As a tensor, so that Lightning can restore the checkpoint with weights_only loading.
            "numpy": _numpy_state_as_tensors(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }
        checkpoint["dastc_rng"] = state
        # Every rank draws its own dropout and augmentation numbers: keep each rank's state.
        per_rank = self.gathered_per_rank(state)
        if per_rank is not None:
            checkpoint["dastc_rng_per_rank"] = per_rank

    def gathered_per_rank(self, state: object) -> list | None:
        """Every rank's ``state``, in rank order, when several processes train (each runs the save hook, rank 0
        writes the file); None in a single process."""
        if self._trainer is None or self.trainer.world_size <= 1:
            return None
        states = [None] * self.trainer.world_size
        torch.distributed.all_gather_object(states, state)
        return states

    def restore_initial_labeller(self, checkpoint: dict) -> None:
        """Rebuild the teacher's frozen start network (``model.init_from`` with another head) when a checkpoint
        holds one, drop it when it does not, so that the checkpoint's weights load with the rest."""
        config = checkpoint.get("dastc_initial_labeller")
        if config is None:
            self.teacher.initial, self.teacher.initial_config = None, None
        elif self.teacher.initial is None or self.teacher.initial_config != config:
            self.teacher.set_initial(instantiate(config), config)

    def match_fdist_weights(self, state_dict: dict) -> None:
        """A run resumed with method.fdist switched since its checkpoint: the frozen encoder's weights are
        dropped from the checkpoint (off now) or taken from this run's construction (on now: its ImageNet or
        initial weights), so that the rest loads."""
        stored = [k for k in state_dict if k.startswith("fdist.")]
        if self.fdist is None:
            for key in stored:
                del state_dict[key]
        elif not stored:
            state_dict.update({f"fdist.{k}": v for k, v in self.fdist.state_dict().items()})

    def load_run_weights(self, checkpoint: dict) -> None:
        """The weights of a checkpoint written by a run of this config (student, teacher and, while it labels,
        the teacher's start network)."""
        self.restore_initial_labeller(checkpoint)
        self.load_state_dict(checkpoint["state_dict"])

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.restore_initial_labeller(checkpoint)
        self.match_fdist_weights(checkpoint["state_dict"])
        per_rank = checkpoint.get("dastc_rng_per_rank")
        if per_rank is not None and len(per_rank) != (self.trainer.world_size if self._trainer else 1):
            log.warning(
                "the checkpoint was written by %d processes and is resumed by another number: the random "
                "streams continue from rank 0's, so the continued run is not bit-identical to an uninterrupted one",
                len(per_rank),
            )
            per_rank = None
        # global_rank is 0 outside a Trainer
        self._pending_rng = (
            per_rank[self.global_rank] if per_rank is not None else checkpoint.get("dastc_rng")
        )
