"""Loss functions shared by the methods."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dastc.models.output import SegmentationOutput


def upsample_to(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resizing of [B, C, h, w] maps to ``size`` (a no-op when the size already matches).

    Corner-aligned, as DeepLab-v2 and the TPS/DA-VSN/ADVENT code resize their outputs: output pixel m of a
    w-wide map lands on input pixel m (W - 1) / (w - 1), so the first and last pixels of both grids coincide
    (a 1024-wide frame's 129 logits sit on its pixels 0, 7.99, ..., 1023).
    """
    if logits.shape[-2:] == tuple(size):
        return logits
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=True)


def cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = 255, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean pixel cross-entropy over non-ignored pixels; zero (not NaN) when every pixel is ignored. ``weights``
    [B]: each image's pixels weighted by its value (MIC's pseudo-label quality), still divided by the count."""
    logits = upsample_to(logits, labels.shape[-2:])
    if weights is None:
        total = F.cross_entropy(logits, labels, ignore_index=ignore_index, reduction="sum")
    else:
        pixels = F.cross_entropy(logits, labels, ignore_index=ignore_index, reduction="none")
        total = (pixels * weights.to(pixels)[:, None, None]).sum()
    return total / (labels != ignore_index).sum().clamp(min=1)


def segmentation_loss(
    out: SegmentationOutput,
    labels: torch.Tensor,
    aux_weight: float = 0.1,
    ignore_index: int = 255,
    aux_labels: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Main cross-entropy plus ``aux_weight`` x the auxiliary head's, when the network has one; the auxiliary
    head learns from ``aux_labels`` when given (a teacher's auxiliary pseudo-labels), else from ``labels``.
    ``weights`` [B] weight each image's pixels in both (see ``cross_entropy``)."""
    loss = cross_entropy(out.logits, labels, ignore_index, weights)
    if out.aux_logits is not None and aux_weight:
        aux_labels = labels if aux_labels is None else aux_labels
        loss = loss + aux_weight * cross_entropy(out.aux_logits, aux_labels, ignore_index, weights)
    return loss
