"""``method=tps``: temporal pseudo supervision (docs/method.md, TPS (stage 1)), the baseline DA-STC starts
from."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from dastc.methods.base import AdaptationMethod
from dastc.methods.masking import MICConfig, mask_clips, normalised_zero, patch_mask, pseudo_label_quality
from dastc.methods.pseudo_labels import PseudoLabels, clip_pseudo_labels, image_pseudo_labels
from dastc.methods.target_augment import StrongPhotometric, random_rescale


def strong_photometric(
    blur_p: float = 0.6,
    blur_sigmas=(5, 7, 9),
    jitter_p: float = 0.8,
    jitter=(0.8, 0.8, 0.8, 0.2),
    gray_p: float = 0.2,
) -> StrongPhotometric:
    """TPS's strong augmentation on raw RGB in [0, 1] (TPS, ECCV 2022): Gaussian blur of sigma 5/7/9 pixels
    (PIL's GaussianBlur radius, p 0.6), colour jitter (brightness/contrast/saturation 0.8, hue 0.2; p 0.8),
    grayscale (p 0.2). Called on one clip's frames [T, 3, H, W], it samples its parameters once, so every frame
    gets the same augmentation."""
    return StrongPhotometric(blur_p, blur_sigmas, jitter_p, jitter, gray_p)


def current_pair(target: dict, frames: torch.Tensor) -> dict:
    """The (t-1, t) pair of (t-2, t-1, t) target clips ``frames`` with the flow of t, at the clips' own size,
    or an image (a clip of one frame) alone."""
    if frames.shape[1] == 1:
        return {"frames": frames, "flow": None}
    return {"frames": frames[:, 1:], "flow": target["flow"][:, 1:]}


class TPS(AdaptationMethod):
    """Source cross-entropy + ``lambda_target`` x cross-entropy of the student on the strongly augmented target
    pair (t-1, t) against the teacher's temporal pseudo-labels of frame t.

    The first ``warmup_steps`` steps train on the source alone (the paper's first stage, inside the same run);
    when adaptation starts the teacher restarts as a copy of the warmed-up student. With ``warmup_steps=0`` the
    teacher starts from the initial weights (``model.init_from``: the two-stage recipe of docs/method.md, TPS
    (stage 1)).
    """

    def __init__(
        self,
        *args,
        lambda_target: float = 1.0,
        flip_prob: float = 0.5,
        strong_aug: bool = True,
        strong_aug_params: Mapping | None = None,
        rescale: Sequence[float] | None = (0.8, 1.2),
        rescale_multiple: int = 8,
        warmup_steps: int = 0,
        pseudo_labels: str = "temporal",
        mic: Mapping | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        if pseudo_labels not in ("temporal", "per_frame"):
            raise ValueError(f"method.pseudo_labels must be 'temporal' or 'per_frame', got {pseudo_labels!r}")
        self.pseudo_label_mode = pseudo_labels
        if warmup_steps < 0:
            raise ValueError(f"method.warmup_steps must be >= 0, got {warmup_steps}")
        if rescale is not None and not (len(rescale) == 2 and 0 < rescale[0] < rescale[1]):
            raise ValueError(f"method.rescale must be null or [low, high] with 0 < low < high, got {rescale}")
        self.lambda_target = lambda_target
        self.flip_prob = flip_prob
        self.augment = strong_photometric(**dict(strong_aug_params or {})) if strong_aug else None
        self.rescale = None if rescale is None else tuple(float(r) for r in rescale)
        self.rescale_multiple = rescale_multiple
        self.warmup_steps = warmup_steps
        self.mic = MICConfig(**dict(mic or {}))  # masked image consistency, an option (off by default)

    @property
    def adaptation_step(self) -> int:
        """Steps since adaptation started (negative during the source-only warm-up)."""
        return self.step - self.warmup_steps

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        super().on_train_batch_start(batch, batch_idx)
        if self.warmup_steps > 0 and self.adaptation_step == 0:
            self.teacher.restart(self.student)

    def pseudo_labels(self, target: dict) -> PseudoLabels:
        """Teacher pseudo-labels and confidences [B, 2, H, W] of the target clips' frames (t-1, t) and the
        auxiliary head's labels of t, mirrored with probability ``flip_prob``."""
        flip = bool(torch.rand((), device="cpu") < self.flip_prob)  # the global CPU stream, on any device
        frames = target["frames"]
        n = frames.shape[1]
        if self.pseudo_label_mode == "per_frame" and n > 1:
            # Image-DA style: the teacher's prediction of each of t-1 and t from that frame alone, no flow.
            per_frame = [
                image_pseudo_labels(self.teacher, frames[:, k : k + 1], None, flip) for k in (n - 2, n - 1)
            ]
            labels = torch.cat([p.labels for p in per_frame], 1)
            confidence = torch.cat([p.confidence for p in per_frame], 1)
            return PseudoLabels(labels, confidence, per_frame[-1].aux)
        return clip_pseudo_labels(self.teacher, frames, target.get("flow"), flip, self.ignore_index)

    def student_view(self, target: dict, frames: torch.Tensor) -> dict:
        """What the student sees of target clips: the pair (t-1, t) of a (t-2, t-1, t) clip with the flow of t,
        or an image (a clip of one frame, docs/method.md, Images) alone, rescaled by a ratio drawn from
        ``rescale`` (TPS). The flow keeps the pseudo-labels' grid: the network resizes it to its logits,
        vectors scaled, and the losses upsample the logits to the pseudo-labels."""
        view = current_pair(target, frames)
        if self.rescale is not None:
            view["frames"] = random_rescale(view["frames"], self.rescale, self.rescale_multiple)
        return view

    def augmented_target(self, target: dict) -> torch.Tensor:
        """The target clips' frames (t-2, t-1, t) strongly augmented, one draw per clip for all its frames."""
        frames = target["frames"]
        if self.augment is None:
            return frames
        return torch.stack([self.augment(clip) for clip in frames])

    def training_losses(self, batch: dict) -> dict[str, torch.Tensor]:
        source, target = batch["source"], batch["target"]
        _, losses = self.source_loss(source)
        if self.adaptation_step < 0:
            return losses
        pseudo = self.pseudo_labels(target)
        augmented = self.augmented_target(target)
        self.record("target", frames=augmented, pseudo=pseudo.labels, confidence=pseudo.confidence)
        view = self.student_view(target, augmented)
        out = self.student(view["frames"], view["flow"])
        target_ce = self.ce(out, pseudo.labels[:, -1], aux_labels=pseudo.aux)
        losses = {**losses, "target_ce": self.lambda_target * target_ce}
        if self.mic.enabled:
            losses["target_mic"] = self.mic_loss(view, pseudo)
        return losses

    def mic_loss(self, view: dict, pseudo: PseudoLabels) -> torch.Tensor:
        """Masked image consistency (MIC, Hoyer et al., CVPR 2023): ``mic.weight`` x the cross-entropy of the
        student on its target view (as the target CE sees it, strongly augmented and rescaled) with random
        ``mic.patch_size`` px cells masked, one mask per clip for all its frames, against the pseudo-labels of
        the unmasked clip, each clip's pixels weighted by its pseudo-label quality (the share of its pixels at
        least ``mic.quality_threshold`` confident). Both heads learn, as in the target CE. Called after every
        other term, so that its mask draw leaves theirs as they are without MIC."""
        cfg, frames = self.mic, view["frames"]
        masked = patch_mask(
            frames.shape[0], *frames.shape[-2:], cfg.patch_size, cfg.mask_ratio, device=frames.device
        )
        frames = mask_clips(frames, masked, normalised_zero(self.student, frames))
        self.record("mic", frames=frames, pseudo=pseudo.labels)
        out = self.student(frames, view["flow"])
        labels = pseudo.labels[:, -1]
        quality = pseudo_label_quality(
            pseudo.confidence[:, -1], labels, cfg.quality_threshold, self.ignore_index
        )
        return cfg.weight * self.ce(out, labels, aux_labels=pseudo.aux, weights=quality)
