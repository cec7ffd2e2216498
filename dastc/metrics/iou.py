"""Per-class IoU and mIoU from a confusion matrix (rows: ground truth, columns: prediction)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def iou_from_confusion(confusion: torch.Tensor) -> torch.Tensor:
    """IoU per class = TP / (TP + FP + FN); NaN for a class absent from both ground truth and prediction."""
    confusion = confusion.double()
    tp = confusion.diagonal()
    union = confusion.sum(0) + confusion.sum(1) - tp
    return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))


def mean_iou(iou: torch.Tensor, classes: Sequence[int] | None = None) -> torch.Tensor:
    """Mean over ``classes`` (all by default), skipping NaN (classes that never occur)."""
    if classes is not None:
        iou = iou[list(classes)]
    return iou.nanmean()
