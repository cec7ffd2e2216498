"""Loss functions shared by the methods."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dastc.models.output import SegmentationOutput


def upsample_to(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling of [B, C, h, w] logits to ``size`` (a no-op when the size already matches)."""
    if logits.shape[-2:] == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """Mean pixel cross-entropy over non-ignored pixels; zero (not NaN) when every pixel is ignored."""
    logits = upsample_to(logits, labels.shape[-2:])
    total = F.cross_entropy(logits, labels, ignore_index=ignore_index, reduction="sum")
    return total / (labels != ignore_index).sum().clamp(min=1)


def segmentation_loss(
    out: SegmentationOutput, labels: torch.Tensor, aux_weight: float = 0.1, ignore_index: int = 255
) -> torch.Tensor:
    """Main cross-entropy plus ``aux_weight`` x the auxiliary head's, when the network has one."""
    loss = cross_entropy(out.logits, labels, ignore_index)
    if out.aux_logits is not None and aux_weight:
        loss = loss + aux_weight * cross_entropy(out.aux_logits, labels, ignore_index)
    return loss
