"""``method=dastc``: TPS plus bidirectional multi-level spatio-temporal fusion and category-aware
spatio-temporal feature alignment (docs/method.md). The mechanics live in fusion.py, alignment.py and
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
    crop_box_holding,
    crop_clip,
    fill_unlabelled_frames,
    flow_fallback,
    mix_clips,
    paste_rare_classes,
    random_crop_box,
)
from dastc.methods.losses import upsample_to
from dastc.methods.pseudo_labels import PseudoLabels
from dastc.methods.tps import TPS, current_pair
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
    rare_min_pixels: int = 5  # a rare clip's crop window is re-drawn until it holds this many class pixels
    # Which mixed clips train: s2t (source classes into the target clip) and t2s (confident target classes
    # into the source clip). DA-STC: both; [s2t] alone is ClassMix as DACS/DAFormer use it (image-DA baselines).
    directions: tuple[str, ...] = ("s2t", "t2s")

    def __post_init__(self):
        self.directions = tuple(self.directions)
        unknown = sorted(set(self.directions) - {"s2t", "t2s"})
        if unknown or not self.directions:
            raise ValueError(
                f"method.fusion.directions must be a non-empty subset of [s2t, t2s], got {list(self.directions)}"
            )


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
    # mmd: also aggregate a (t, t-2) target pass over the raw frames, averaged with (t, t-1) as the authors'
    # loop does. (The cosine aggregates span the frames each pass computes; a second pass adds nothing new.)
    second_pass: bool = True
    # Under DDP, sum the class aggregates over ranks (one global aggregate per class and domain, as one process
    # with the global batch would have); false: each rank aligns its own clips' aggregates.
    sync_ranks: bool = True


class DASTC(TPS):
    def __init__(self, *args, fusion: dict | None = None, align: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fusion = FusionConfig(**dict(fusion or {}))
        self.align = AlignConfig(**dict(align or {}))
        # With batch 1 the pasted source clip is the previous step's (kept in checkpoints for exact resumes).
        self._previous_source: dict | None = None

    # --- the algorithm ----------------------------------------------------------------------------------------
    def training_losses(self, batch: dict) -> dict[str, torch.Tensor]:
        source, target = batch["source"], batch["target"]
        source_out, losses = self.source_loss(source)
        if self.adaptation_step < 0:
            return losses
        pseudo = self.pseudo_labels(target)
        augmented = self.augmented_target(target)
        self.record("target", frames=augmented, pseudo=pseudo.labels, confidence=pseudo.confidence)
        view = self.student_view(target, augmented)
        target_out = self.student(view["frames"], view["flow"])
        target_ce = self.ce(target_out, pseudo.labels[:, -1], aux_labels=pseudo.aux)
        losses["target_ce"] = self.lambda_target * target_ce
        if self.fusion.image or self.fusion.feature:
            rare = batch.get("rare") if self.fusion.rare_class_paste else None
            losses.update(self.fusion_losses(source, target, augmented, pseudo, rare))
        if self.align.enabled:
            losses["align"] = self.align.weight * self.alignment_loss(
                source, source_out, target, target_out, pseudo
            )
        if self.mic.enabled:  # last: the other terms draw what they draw without MIC
            losses["target_mic"] = self.mic_loss(view, pseudo)
        return losses

    # --- 6a / 6b: fusion --------------------------------------------------------------------------------------
    def paste_source(self, source: dict) -> dict:
        """The source clip whose pixels are pasted: another clip of the batch, or the previous step's clip."""
        clip = {k: source[k] for k in ("frames", "flow", "labels") if source.get(k) is not None}
        if source["frames"].shape[0] > 1:
            return {k: v.roll(1, 0) for k, v in clip.items()}
        previous, self._previous_source = self._previous_source, {k: v.detach() for k, v in clip.items()}
        if previous is None or any(previous[k].shape != clip[k].shape for k in clip):
            return clip  # the first step (or a clip of another size): the clip itself
        return {k: v.to(clip[k].device) for k, v in previous.items()}

    def fusion_losses(
        self, source: dict, target: dict, augmented: torch.Tensor, pseudo: PseudoLabels, rare: dict | None
    ) -> dict:
        """The two intermediate domains, both directions: source classes pasted into the strongly augmented
        target pair (labels: source ground truth inside, pseudo-labels outside), confident target classes of
        the raw target pair pasted into the source pair (as the authors' loop pastes raw target frames); at
        the image level (with rare classes pasted into both) and the shallow-feature level. Each mixed clip is
        supervised on its current frame through the main head only, as in the authors' loop."""
        cfg = self.fusion
        # One CPU generator seeded from the global stream (checkpointed): the same draws on any device.
        generator = torch.Generator().manual_seed(int(torch.randint(0, 2**31 - 1, (), device="cpu")))
        strong, raw = current_pair(target, augmented), current_pair(target, target["frames"])
        source, paste = self.shared_size(source, strong, self.paste_source(source), generator)
        paste = {**paste, "labels": fill_unlabelled_frames(paste["labels"], self.ignore_index)}
        source_sets = choose_source_classes(
            paste["labels"][:, -1], generator, cfg.source_classes, cfg.long_tail, self.ignore_index
        )
        source_mask = class_mask(paste["labels"], source_sets)
        target_sets = choose_target_classes(
            pseudo.labels[:, -1], generator, source_sets, cfg.target_classes, self.ignore_index
        )
        target_mask = class_mask(pseudo.labels, target_sets, pseudo.confidence, cfg.target_threshold)
        s2t = mix_clips(strong, paste, source_mask, pseudo.labels, paste["labels"])
        t2s = mix_clips(source, raw, target_mask, source["labels"], pseudo.labels)
        losses = {}
        if cfg.image:
            s2t_image, t2s_image = s2t, t2s
            if rare is not None:  # pasted at the image level only: the feature level mixes two clips
                rare_clips = self.rare_clips(rare, strong, generator)
                s2t_image = paste_rare_classes(s2t, rare_clips, rare["classes"])
                t2s_image = paste_rare_classes(t2s, rare_clips, rare["classes"])
            if "s2t" in cfg.directions:
                self.record("mix_s2t", frames=s2t_image["frames"], labels=s2t_image["labels"])
                losses["mix_s2t_ce"] = self.lambda_target * self.mixed_ce(s2t_image["frames"], s2t_image)
            if "t2s" in cfg.directions:
                self.record("mix_t2s", frames=t2s_image["frames"], labels=t2s_image["labels"])
                losses["mix_t2s_ce"] = self.mixed_ce(t2s_image["frames"], t2s_image)
        if cfg.feature and self.adaptation_step >= cfg.feature_start:
            pairs = {"s2t": ("strong", "paste"), "t2s": ("source", "raw")}
            needed = {name for direction in cfg.directions for name in pairs[direction]}
            clips = {"strong": strong, "raw": raw, "paste": paste, "source": source}
            shallow = {
                name: self.student.encode_shallow(clip["frames"])
                for name, clip in clips.items()
                if name in needed
            }
            for direction, mixed_clip, mask, weight in (
                ("s2t", s2t, source_mask, self.lambda_target),
                ("t2s", t2s, target_mask, 1.0),
            ):
                if direction in cfg.directions:
                    own, other = pairs[direction]
                    mixed = [
                        blend_features(a, b, mask, cfg.alpha)
                        for a, b in zip(shallow[own], shallow[other], strict=True)
                    ]
                    losses[f"feat_{direction}_ce"] = weight * self.mixed_ce(
                        clips[own]["frames"], mixed_clip, mixed
                    )
        return losses

    def mixed_ce(self, frames: torch.Tensor, mixed: dict, shallow: list | None = None) -> torch.Tensor:
        """Main-head cross-entropy of the student on a mixed clip's current frame (the frames, or shallow
        features, with the mixed flow); pasted pixels whose flow leaves the pasted region use the current
        frame's scores instead of the warped previous frame's."""
        flow = mixed.get("flow")
        out = self.student(frames, flow, shallow=shallow, fallback=flow_fallback(mixed["mask"], flow))
        return self.ce(out, mixed["labels"][:, -1], aux=False)

    def rare_clips(self, rare: dict, like: dict, generator: torch.Generator) -> list[dict]:
        """The rare-class source clips at the mixed clips' size: each cropped to a window that holds enough of
        its class on the current frame (re-drawn while it does not), unlabelled frames given frame t's label."""
        size = tuple(like["frames"].shape[-2:])
        clips = []
        for k, clip in enumerate(rare["clips"]):
            if tuple(clip["frames"].shape[-2:]) != size:
                boxes = [
                    crop_box_holding(labels[-1], int(cls), size, generator, self.fusion.rare_min_pixels)
                    for labels, cls in zip(clip["labels"], rare["classes"][:, k], strict=True)
                ]
                clip = _stack_crops(clip, boxes)
            clips.append({**clip, "labels": fill_unlabelled_frames(clip["labels"], self.ignore_index)})
        return clips

    @staticmethod
    def shared_size(source: dict, target: dict, paste: dict | None, generator: torch.Generator):
        """Source-side clips cropped to the target's size, one random window per clip batch (a 512x1024
        window of the 640x1280 source frames, as the authors crop); unchanged when the sizes already agree."""
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
        self, source: dict, source_out, target: dict, target_out, pseudo: PseudoLabels
    ) -> torch.Tensor:
        """Category-aware alignment of this step's clips. Under DDP the class aggregates are summed over ranks
        (``align.sync_ranks``): every rank aligns the aggregates of the whole global batch.

        cosine (the paper): per-class aggregates of the 256-d deep features over every frame the student
        computed, current and previous alike: source pixels by ground truth where the prediction agrees,
        target pixels by the teacher's pseudo-labels of t and t-1, each weighted by its confidence.
        mmd (the authors' released loop): class-mean fused logits of the current frame; the target's average
        the (t, t-1) pass and a (t, t-2) pass over the raw frames."""
        cfg = self.align
        if cfg.loss not in ("cosine", "mmd"):
            raise ValueError(f"method.align.loss must be 'cosine' or 'mmd', got {cfg.loss!r}")
        frames_of = (lambda out: [out]) if cfg.loss == "mmd" else _frames_computed
        source_parts = []
        for k, out in enumerate(frames_of(source_out)):  # current, then previous
            probs = F.softmax(out.logits.detach(), 1)
            labels = source["labels"][:, -1 - k]
            source_parts.append((out, labels, probs.max(1).values[:, None], probs))
        source_mean, source_present = self._aggregate(source_parts)
        target_parts = [
            (out, pseudo.labels[:, -1 - k], pseudo.confidence[:, -1 - k, None], None)
            for k, out in enumerate(frames_of(target_out))
        ]
        target_mean, target_present = self._aggregate(target_parts)
        # mmd: also a (t-2, t) pass over the raw frames, flow t -> t-1 -> t-2 (a network that ignores earlier
        # frames would give exactly the first pass).
        video = target["frames"].shape[1] == 3 and getattr(self.student, "uses_previous_frame", True)
        if cfg.loss == "mmd" and cfg.second_pass and video:
            flow = compose(target["flow"][:, 1], target["flow"][:, 0])[:, None]
            second = self.student(target["frames"][:, [0, 2]], flow)
            parts = [(second, pseudo.labels[:, -1], pseudo.confidence[:, -1, None], None)]
            second_mean, second_present = self._aggregate(parts)
            target_mean = (target_mean + second_mean) / 2
            target_present = target_present & second_present
        both = source_present & target_present
        if cfg.loss == "mmd":
            return mmd_loss(source_mean[both], target_mean[both])
        return intra_class_loss(source_mean, target_mean, both) + inter_class_loss(
            source_mean, target_mean, both, cfg.inter, cfg.temperature, cfg.margin
        )

    def _aggregate(self, parts: list) -> tuple[torch.Tensor, torch.Tensor]:
        """One domain's class aggregates over ``parts`` (frames): each ``(output, labels [B, H, W], weights
        [B, 1, H, W], agree_with)``, brought to its output's resolution and pooled into one set of sums."""
        values, labels, weights = [], [], []
        for out, label, weight, agree_with in parts:
            small_labels, small_weights = self._at(out, label, weight, agree_with)
            values.append(out.logits if self.align.loss == "mmd" else out.features)
            labels.append(small_labels)
            weights.append(small_weights)
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        reduce = all_ranks_sum if self.align.sync_ranks and distributed else None
        return class_aggregates(
            torch.cat(values),
            torch.cat(labels),
            torch.cat(weights),
            self.num_classes,
            self.align.min_pixels,
            self.ignore_index,
            reduce,
        )

    def _at(self, out: SegmentationOutput, labels: torch.Tensor, weights: torch.Tensor, agree_with=None):
        """Labels and weights at the resolution of the network's features (nearest / bilinear)."""
        size = (out.logits if self.align.loss == "mmd" else out.features).shape[-2:]
        small = F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()
        weights = upsample_to(weights.float(), size)[:, 0]
        if agree_with is not None:
            prediction = upsample_to(agree_with, size).argmax(1)
            small = torch.where(prediction == small, small, torch.full_like(small, self.ignore_index))
        return small, weights

    # --- checkpoints ------------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        # The clip the next step pastes (batch 1): without it a resumed run pastes another and diverges.
        previous = None
        if self._previous_source is not None:
            previous = {k: v.detach().cpu() for k, v in self._previous_source.items()}
        per_rank = self.gathered_per_rank(previous)
        if per_rank is not None:
            checkpoint["dastc_previous_source_per_rank"] = per_rank
        else:
            checkpoint["dastc_previous_source"] = previous

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        per_rank = checkpoint.get("dastc_previous_source_per_rank")
        if per_rank is not None:
            self._previous_source = per_rank[self.global_rank] if self.global_rank < len(per_rank) else None
        else:
            self._previous_source = checkpoint.get("dastc_previous_source")


def _frames_computed(out: SegmentationOutput) -> list[SegmentationOutput]:
    """The outputs of every frame a video network computed: the current frame's, then the previous one's."""
    return [out] if out.previous is None else [out, out.previous]


def _stack_crops(clip: dict, boxes: list[tuple]) -> dict:
    """Each clip of a batch cropped to its own window (frames, labels, flow)."""
    crops = [crop_clip({k: v[i : i + 1] for k, v in clip.items()}, box) for i, box in enumerate(boxes)]
    return {k: torch.cat([c[k] for c in crops]) for k in crops[0]}
