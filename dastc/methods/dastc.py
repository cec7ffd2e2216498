"""``method=dastc``: TPS plus bidirectional multi-level spatio-temporal fusion and category-aware
spatio-temporal feature alignment (method.md section 6). The mechanics live in fusion.py, alignment.py and
pseudo_labels.py; this module reads like the algorithm:

1. source CE on the source pair (t-1, t);
2. teacher pseudo-labels of target (t-1, t) from key frame t-2; target CE of the strongly augmented pair;
3. image-sequence fusion, both directions: source classes pasted into the target clip, confident target
   classes pasted into the source clip, one class set per clip, each frame's own pixels; CE on the mixed
   current frame (source->target x lambda_T, target->source x 1);
4. shallow-feature fusion, both directions, with the same masks (after ``fusion.feature_start`` steps);
5. category-aware alignment of per-class space-time feature aggregates (x ``align.weight``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from dastc.flow.warp import compose
from dastc.methods.alignment import (
    all_ranks_sum,
    class_aggregates,
    inter_class_loss,
    intra_class_loss,
    mmd_loss,
)
from dastc.methods.fusion import (
    blend_features,
    choose_source_classes,
    choose_target_classes,
    class_mask,
    crop_clip,
    fill_unlabelled_frames,
    mix_clips,
    paste_rare_classes,
    random_crop_box,
)
from dastc.methods.tps import TPS
from dastc.models.output import SegmentationOutput


@dataclass
class FusionConfig:
    image: bool = True  # image-sequence-level mixing, both directions (6a)
    feature: bool = True  # shallow-feature-level mixing, both directions (6b)
    feature_start: int = 8000  # adaptation steps before feature-level mixing starts (authors' schedule)
    alpha: float = 0.3  # weight of the other domain inside the mask (6b)
    source_classes: int = 2  # classes drawn from the source label, besides the long-tail ones
    target_classes: int = 2  # classes drawn from the pseudo-labels
    target_threshold: float = 0.9  # teacher confidence a pasted target pixel needs
    long_tail: list[int] = field(default_factory=list)  # always pasted from the source when present
    rare_class_paste: bool = True  # also paste long-tail classes from other source clips (batch["rare"])
    rare_classes: int = 2  # how many (the DataModule supplies them; 2 SYNTHIA-Seq, 3 VIPER)


@dataclass
class AlignConfig:
    enabled: bool = True
    weight: float = 0.01  # the authors' alignment weight, on intra + inter (6c)
    # cosine: intra-class 1 - cos + inter-class separation | mmd: the authors' released form
    loss: str = "cosine"
    inter: str = "infonce"  # infonce | margin
    temperature: float = 0.1
    margin: float = 0.0
    min_pixels: int = 5
    # Also aggregate a (t, t-2) target pass, averaged with (t, t-1) as the authors do.
    second_pass: bool = True
    # Under DDP, sum the class aggregates over ranks (one global aggregate per class and domain, as one process
    # with the global batch would have); false: each rank aligns its own clips' aggregates.
    sync_ranks: bool = True


class DASTC(TPS):
    def __init__(self, *args, fusion: dict | None = None, align: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fusion = FusionConfig(**dict(fusion or {}))
        self.align = AlignConfig(**dict(align or {}))
        self._previous_source: dict | None = None

    # --- the algorithm ----------------------------------------------------------------------------------------
    def training_losses(self, batch: dict) -> dict[str, torch.Tensor]:
        source, target = batch["source"], batch["target"]
        source_out, source_ce = self.source_loss(source)
        if self.adaptation_step < 0:
            return {"source_ce": source_ce}
        pseudo, confidence = self.pseudo_labels(target)
        augmented = self.augmented_target(target)
        self.record("target", frames=augmented, pseudo=pseudo, confidence=confidence)
        student_target = {**self.student_view(target, augmented), "all_frames": augmented}
        target_out = self.student(student_target["frames"], student_target["flow"])
        losses = {
            "source_ce": source_ce,
            "target_ce": self.lambda_target * self.ce(target_out, pseudo[:, -1]),
        }
        if self.fusion.image or self.fusion.feature:
            rare = batch.get("rare") if self.fusion.rare_class_paste else None
            losses.update(self.fusion_losses(source, student_target, pseudo, confidence, rare))
        if self.align.enabled:
            losses["align"] = self.align.weight * self.alignment_loss(
                source_out,
                source["labels"][:, -1],
                target,
                student_target,
                target_out,
                pseudo[:, -1],
                confidence[:, -1],
            )
        return losses

    # --- 6a / 6b: fusion --------------------------------------------------------------------------------------
    def paste_source(self, source: dict) -> dict:
        """The source clip whose pixels are pasted: another clip of the batch, or the previous step's clip."""
        clip = {k: source[k] for k in ("frames", "flow", "labels") if source.get(k) is not None}
        if source["frames"].shape[0] > 1:
            return {k: v.roll(1, 0) for k, v in clip.items()}
        previous, self._previous_source = self._previous_source, {k: v.detach() for k, v in clip.items()}
        return clip if previous is None else previous

    def fusion_losses(
        self,
        source: dict,
        target: dict,
        pseudo: torch.Tensor,
        confidence: torch.Tensor,
        rare: dict | None = None,
    ) -> dict:
        cfg = self.fusion
        generator = torch.Generator().manual_seed(int(torch.randint(0, 2**31 - 1, ())))
        source, paste = self.shared_size(source, target, self.paste_source(source), generator)
        paste = {**paste, "labels": fill_unlabelled_frames(paste["labels"], self.ignore_index)}
        source_sets = choose_source_classes(
            paste["labels"][:, -1], generator, cfg.source_classes, cfg.long_tail, self.ignore_index
        )
        source_mask = class_mask(paste["labels"], source_sets)
        target_sets = choose_target_classes(
            pseudo[:, -1], generator, source_sets, cfg.target_classes, self.ignore_index
        )
        target_mask = class_mask(pseudo, target_sets, confidence, cfg.target_threshold)
        s2t = mix_clips(target, paste, source_mask, pseudo, paste["labels"])
        t2s = mix_clips(source, target, target_mask, source["labels"], pseudo)
        losses = {}
        if cfg.image:
            s2t_image = s2t
            if rare is not None:  # pasted at the image level only: the feature level mixes two clips
                rare_clips = [self.shared_size(c, target, None, generator)[0] for c in rare["clips"]]
                rare_clips = [
                    {**c, "labels": fill_unlabelled_frames(c["labels"], self.ignore_index)}
                    for c in rare_clips
                ]
                s2t_image = paste_rare_classes(s2t, rare_clips, rare["classes"])
            self.record("mix_s2t", frames=s2t_image["frames"], labels=s2t_image["labels"])
            self.record("mix_t2s", frames=t2s["frames"], labels=t2s["labels"])
            losses["mix_s2t_ce"] = self.lambda_target * self.ce(
                self.student(s2t_image["frames"], s2t_image.get("flow")), s2t_image["labels"][:, -1]
            )
            losses["mix_t2s_ce"] = self.ce(self.student(t2s["frames"], t2s.get("flow")), t2s["labels"][:, -1])
        if cfg.feature and self.adaptation_step >= cfg.feature_start:
            shallow_t = self.student.encode_shallow(target["frames"])
            shallow_p = self.student.encode_shallow(paste["frames"])
            shallow_s = self.student.encode_shallow(source["frames"])
            mixed_s2t = [
                blend_features(own, other, source_mask, cfg.alpha)
                for own, other in zip(shallow_t, shallow_p, strict=True)
            ]
            mixed_t2s = [
                blend_features(own, other, target_mask, cfg.alpha)
                for own, other in zip(shallow_s, shallow_t, strict=True)
            ]
            out = self.student(target["frames"], s2t.get("flow"), shallow=mixed_s2t)
            losses["feat_s2t_ce"] = self.lambda_target * self.ce(out, s2t["labels"][:, -1])
            out = self.student(source["frames"], t2s.get("flow"), shallow=mixed_t2s)
            losses["feat_t2s_ce"] = self.ce(out, t2s["labels"][:, -1])
        return losses

    @staticmethod
    def shared_size(source: dict, target: dict, paste: dict | None, generator: torch.Generator):
        """Source-side clips cropped to the target's size, one random window per clip batch (method.md 6a:
        a 512x1024 window of the 640x1280 source frames); unchanged when the sizes already agree."""
        size = target["frames"].shape[-2:]
        height, width = source["frames"].shape[-2:]
        if (height, width) == size:
            return source, paste
        if height < size[0] or width < size[1]:
            raise ValueError(
                f"source clips ({height}x{width}) are smaller than target clips ({size[0]}x{size[1]}): "
                "they cannot be mixed"
            )
        box = random_crop_box(height, width, tuple(size), generator)
        return crop_clip(source, box), None if paste is None else crop_clip(paste, box)

    # --- 6c: category-aware alignment -------------------------------------------------------------------------
    def alignment_loss(
        self, source_out, source_labels, target, student_target, target_out, pseudo, confidence
    ) -> torch.Tensor:
        """Category-aware alignment of this step's clips. Under DDP the class aggregates are summed over ranks
        (``align.sync_ranks``): every rank aligns the aggregates of the whole global batch."""
        cfg = self.align
        # Source pixels count where the prediction agrees with the ground truth, weighted by its confidence.
        probs = F.softmax(source_out.logits.detach(), 1)
        labels, weights = self._at(source_out, source_labels, probs.max(1).values[:, None], agree_with=probs)
        source_mean, source_present = self._aggregate(source_out, labels, weights)
        # Target pixels by pseudo-label, weighted by the teacher's confidence; (t, t-1) and (t, t-2) passes.
        outs = [target_out]
        # A network that ignores earlier frames would give the (t, t-2) pass exactly the (t, t-1) one.
        # Images (clips of one frame) have no (t, t-2) pass: their aggregates are over space alone.
        video = student_target["all_frames"].shape[1] == 3
        if cfg.second_pass and video and getattr(self.student, "uses_previous_frame", True):
            frames = student_target["all_frames"][:, [0, 2]]  # (t-2, t), augmented like the first pass
            flow = compose(target["flow"][:, 1], target["flow"][:, 0])[:, None]  # t -> t-1 -> t-2
            outs.append(self.student(frames, flow))
        means, presents = [], []
        for out in outs:
            labels, weights = self._at(out, pseudo, confidence[:, None])
            mean, present = self._aggregate(out, labels, weights)
            means.append(mean)
            presents.append(present)
        target_mean = torch.stack(means).mean(0)
        both = source_present & torch.stack(presents).all(0)
        if cfg.loss == "mmd":
            return mmd_loss(source_mean[both], target_mean[both])
        if cfg.loss != "cosine":
            raise ValueError(f"method.align.loss must be 'cosine' or 'mmd', got {cfg.loss!r}")
        return intra_class_loss(source_mean, target_mean, both) + inter_class_loss(
            source_mean, target_mean, both, cfg.inter, cfg.temperature, cfg.margin
        )

    def _aggregate(self, out: SegmentationOutput, labels, weights):
        # The MMD variant compares class-mean logits (the authors' code); the cosine losses deep features.
        values = out.logits if self.align.loss == "mmd" else out.features
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        reduce = all_ranks_sum if self.align.sync_ranks and distributed else None
        return class_aggregates(
            values, labels, weights, self.num_classes, self.align.min_pixels, self.ignore_index, reduce
        )

    def _at(self, out: SegmentationOutput, labels: torch.Tensor, weights: torch.Tensor, agree_with=None):
        """Labels and weights at the resolution of the network's features (nearest / bilinear)."""
        size = (out.logits if self.align.loss == "mmd" else out.features).shape[-2:]
        small = F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()
        weights = F.interpolate(weights.float(), size=size, mode="bilinear", align_corners=False)[:, 0]
        if agree_with is not None:
            prediction = F.interpolate(agree_with, size=size, mode="bilinear", align_corners=False).argmax(1)
            small = torch.where(prediction == small, small, torch.full_like(small, self.ignore_index))
        return small, weights
