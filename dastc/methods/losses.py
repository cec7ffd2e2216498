"""Loss functions shared by the methods."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dastc.models.multires import sample_span
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
    ``weights`` [B] weight each image's pixels in both (see ``cross_entropy``).

    An output that carries HRDA's detail window (``out.detail``, dastc.models.multires) gets HRDA's loss:
    (1 - lambda_d) x that of the fused prediction + lambda_d x the same loss of the window's own prediction on
    the labels inside the window (HRDA, Hoyer et al. ECCV 2022; lambda_d = ``out.detail.weight``)."""
    loss = _heads_loss(out.logits, out.aux_logits, labels, aux_weight, ignore_index, aux_labels, weights)
    detail = out.detail
    if detail is None:
        return loss
    window = _heads_loss(
        detail.output.logits,
        detail.output.aux_logits,
        labels,
        aux_weight,
        ignore_index,
        aux_labels,
        weights,
        detail.span,
    )
    return (1 - detail.weight) * loss + detail.weight * window


def _heads_loss(
    logits, aux_logits, labels, aux_weight, ignore_index, aux_labels, weights=None, span=None
) -> torch.Tensor:
    """Main + ``aux_weight`` x auxiliary cross-entropy; with ``span``, of a window's logits against the labels
    inside it (window_labels)."""
    loss = _window_ce(logits, labels, ignore_index, weights, span)
    if aux_logits is not None and aux_weight:
        aux_labels = labels if aux_labels is None else aux_labels
        loss = loss + aux_weight * _window_ce(aux_logits, aux_labels, ignore_index, weights, span)
    return loss


def _window_ce(logits, labels, ignore_index, weights, span) -> torch.Tensor:
    if span is None:
        return cross_entropy(logits, labels, ignore_index, weights)
    return cross_entropy(*window_labels(logits, labels, span), ignore_index, weights)


def window_labels(
    logits: torch.Tensor, labels: torch.Tensor, span: tuple[float, float, float, float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """A window's logits [B, C, h, w] and the labels [B, H, W] of the whole input inside it, on the labels' grid:
    the label pixels whose positions lie within ``span`` (fractions of the input, corner-aligned), and the
    logits sampled bilinearly there. The labels may be on another grid than the network's input (TPS's
    rescaled target pair): positions are fractions of the frame on both."""
    (r0, r1), (c0, c1), sampled = sample_span(logits, span, labels.shape[-2:])
    return sampled, labels[..., r0:r1, c0:c1]
