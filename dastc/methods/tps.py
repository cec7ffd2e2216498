"""``method=tps``: temporal pseudo supervision (method.md section 5), the baseline DA-STC starts from."""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from dastc.methods.base import AdaptationMethod
from dastc.methods.pseudo_labels import clip_pseudo_labels


def strong_photometric(
    blur_p: float = 0.6,
    blur_kernels=(5, 7, 9),
    jitter_p: float = 0.8,
    jitter=(0.8, 0.8, 0.8, 0.2),
    gray_p: float = 0.2,
) -> v2.Transform:
    """TPS's strong augmentation on raw RGB in [0, 1]: Gaussian blur (kernel 5/7/9, p 0.6), colour jitter
    (brightness/contrast/saturation 0.8, hue 0.2; p 0.8), grayscale (p 0.2). Called on one clip's frames
    [T, 3, H, W], it samples its parameters once, so every frame gets the same augmentation."""
    blur = v2.RandomChoice([v2.GaussianBlur(k) for k in blur_kernels])
    return v2.Compose(
        [
            v2.RandomApply([blur], p=blur_p),
            v2.RandomApply([v2.ColorJitter(*jitter)], p=jitter_p),
            v2.RandomGrayscale(p=gray_p),
        ]
    )


class TPS(AdaptationMethod):
    """Source cross-entropy + ``lambda_target`` x cross-entropy of the student on the strongly augmented target
    pair (t-1, t) against the teacher's temporal pseudo-labels of frame t.

    The first ``warmup_steps`` steps train on the source alone (the paper's first stage, inside the same run);
    when adaptation starts the teacher restarts as a copy of the warmed-up student. With ``warmup_steps=0`` the
    teacher starts from the initial weights (``model.init_from``: the two-stage recipe of method.md s.5).
    """

    def __init__(
        self,
        *args,
        lambda_target: float = 1.0,
        flip_prob: float = 0.5,
        strong_aug: bool = True,
        warmup_steps: int = 0,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        if warmup_steps < 0:
            raise ValueError(f"method.warmup_steps must be >= 0, got {warmup_steps}")
        self.lambda_target = lambda_target
        self.flip_prob = flip_prob
        self.augment = strong_photometric() if strong_aug else None
        self.warmup_steps = warmup_steps

    @property
    def adaptation_step(self) -> int:
        """Steps since adaptation started (negative during the source-only warm-up)."""
        return self.step - self.warmup_steps

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        super().on_train_batch_start(batch, batch_idx)
        if self.warmup_steps > 0 and self.adaptation_step == 0:
            self.teacher.restart(self.student)

    def pseudo_labels(self, target: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher pseudo-labels and confidences [B, 2, H, W] of the target clips' frames (t-1, t), mirrored
        with probability ``flip_prob``."""
        flip = bool(torch.rand(()) < self.flip_prob)
        return clip_pseudo_labels(self.teacher, target["frames"], target.get("flow"), flip, self.ignore_index)

    @staticmethod
    def student_view(target: dict, frames: torch.Tensor) -> dict:
        """What the student sees of target clips: the pair (t-1, t) of a (t-2, t-1, t) clip with the flow of t,
        or an image (a clip of one frame, method.md section 9) alone."""
        if frames.shape[1] == 1:
            return {"frames": frames, "flow": None}
        return {"frames": frames[:, 1:], "flow": target["flow"][:, 1:]}

    def augmented_target(self, target: dict) -> torch.Tensor:
        """The target clips' frames (t-2, t-1, t) strongly augmented, one draw per clip for all its frames."""
        frames = target["frames"]
        if self.augment is None:
            return frames
        return torch.stack([self.augment(clip) for clip in frames])

    def training_losses(self, batch: dict) -> dict[str, torch.Tensor]:
        source, target = batch["source"], batch["target"]
        _, source_ce = self.source_loss(source)
        if self.adaptation_step < 0:
            return {"source_ce": source_ce}
        pseudo, confidence = self.pseudo_labels(target)
        augmented = self.augmented_target(target)
        self.record("target", frames=augmented, pseudo=pseudo, confidence=confidence)
        view = self.student_view(target, augmented)
        out = self.student(view["frames"], view["flow"])
        return {"source_ce": source_ce, "target_ce": self.lambda_target * self.ce(out, pseudo[:, -1])}
