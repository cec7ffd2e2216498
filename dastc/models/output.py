"""What every segmentation network returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SegmentationOutput:
    """Predictions for the clip's current frame.

    ``logits`` [B, C, h, w] is what losses and evaluation use (upsampled to the label size by the method);
    ``aux_logits`` is an optional auxiliary head's output (weighted by ``method.aux_weight``); ``features`` is
    the deep feature map before the classifier, used by feature alignment.
    """

    logits: torch.Tensor
    aux_logits: torch.Tensor | None = None
    features: torch.Tensor | None = None
