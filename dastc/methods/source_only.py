"""``method=source_only``: supervised training on source clips, the baseline adaptation is measured against."""

from __future__ import annotations

import torch

from dastc.methods.base import AdaptationMethod
from dastc.methods.losses import segmentation_loss


class SourceOnly(AdaptationMethod):
    """Cross-entropy (main + aux_weight x aux) on the current frame of each source clip; target clips unused."""

    def training_losses(self, batch: dict) -> dict[str, torch.Tensor]:
        source = batch["source"]
        out = self.student(source["frames"], source.get("flow"))
        return {
            "source_ce": segmentation_loss(out, source["labels"][:, -1], self.aux_weight, self.ignore_index)
        }
