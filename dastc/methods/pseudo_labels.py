"""Temporal pseudo-labels (docs/method.md, TPS (stage 1)): the teacher's prediction of frame t-1, made with
key frame t-2, carried onto frame t by the flow."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from dastc.flow.warp import warp
from dastc.methods.losses import upsample_to


def flip_clip(frames: torch.Tensor, flow: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Horizontal flip of a clip [B, T, 3, H, W] and its flow [B, T-1, 2, H, W]: the flow's x is negated (an
    image's missing flow stays None)."""
    if flow is not None:
        flow = flow.flip(-1).clone()
        flow[:, :, 0] = -flow[:, :, 0]
    return frames.flip(-1), flow


class PseudoLabels(NamedTuple):
    """The teacher's hard labels and confidences [B, T', H, W] of a target clip's frames (t-1, t), or of an
    image [B, 1, H, W]; ``aux`` [B, H, W] the labels its auxiliary head gives the current frame (None without
    one), which supervise the student's auxiliary head as in TPS (each head learns from its own kind)."""

    labels: torch.Tensor
    confidence: torch.Tensor
    aux: torch.Tensor | None = None


def teacher_probabilities(
    teacher, frames: torch.Tensor, flow: torch.Tensor | None, flip: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The teacher's main and auxiliary class probabilities [B, C, H, W] of a clip's last frame at the frames'
    size (auxiliary: None without an auxiliary head); with ``flip`` made on the mirrored clip, mirrored back."""
    if flip:
        frames, flow = flip_clip(frames, flow)
    out = teacher(frames, flow)
    probs = [
        None if logits is None else F.softmax(upsample_to(logits, frames.shape[-2:]), 1)
        for logits in (out.logits, out.aux_logits)
    ]
    return tuple(p.flip(-1) if flip and p is not None else p for p in probs)


@torch.no_grad()
def clip_pseudo_labels(
    teacher, frames: torch.Tensor, flow: torch.Tensor, flip: bool = False, ignore_index: int = 255
) -> PseudoLabels:
    """Pseudo-labels and confidences [B, 2, H, W] for frames (t-1, t) of target clips (t-2, t-1, t): the
    teacher's prediction of t-1 and that prediction carried onto t. For images (clips of one frame): [B, 1, H, W],
    the teacher's prediction of the image itself (see ``image_pseudo_labels``).

    ``flow[:, 0]`` maps t-1 onto t-2 (the teacher's two-frame input), ``flow[:, 1]`` maps t onto t-1 (carries
    the prediction to t). ``flip`` runs the teacher on the mirrored clip (flow x negated) and mirrors its
    probabilities back. Pixels of t whose flow leads outside frame t-1 get ``ignore_index`` and confidence 0.
    The auxiliary head's probabilities travel the same way into ``aux``.
    """
    if frames.shape[1] == 1:  # an image (docs/method.md, "Images"): the teacher's own prediction, no warping
        return image_pseudo_labels(teacher, frames, flow, flip)
    if frames.shape[1] != 3 or flow is None or flow.shape[1] != 2:
        raise ValueError(
            f"temporal pseudo-labels need clips (t-2, t-1, t) with 2 flows, got {tuple(frames.shape)}"
        )
    probs, aux_probs = teacher_probabilities(teacher, frames[:, :2], flow[:, :1], flip)
    confidence, labels = warp(probs, flow[:, 1]).max(1)
    # Warping ones shows where the flow stays inside frame t-1 (1 there; less where zero padding enters).
    outside = warp(torch.ones_like(probs[:, :1]), flow[:, 1])[:, 0] < 1.0 - 1e-4
    labels[outside] = ignore_index
    confidence[outside] = 0.0
    aux = None
    if aux_probs is not None:
        aux = warp(aux_probs, flow[:, 1]).argmax(1)
        aux[outside] = ignore_index
    previous_confidence, previous_labels = probs.max(1)
    return PseudoLabels(
        torch.stack((previous_labels, labels), 1), torch.stack((previous_confidence, confidence), 1), aux
    )


@torch.no_grad()
def image_pseudo_labels(
    teacher, frames: torch.Tensor, flow: torch.Tensor | None = None, flip: bool = False
) -> PseudoLabels:
    """Pseudo-labels and confidences [B, 1, H, W] of images (clips of one frame [B, 1, 3, H, W]): the teacher's
    prediction of the image, made on the mirrored image when ``flip``, as the image-DA mean teachers do."""
    probs, aux_probs = teacher_probabilities(teacher, frames, flow, flip)
    confidence, labels = probs.max(1)
    return PseudoLabels(
        labels[:, None], confidence[:, None], None if aux_probs is None else aux_probs.argmax(1)
    )
