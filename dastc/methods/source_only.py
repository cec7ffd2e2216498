"""``method=source_only``: supervised training on source clips, the baseline adaptation is measured against."""

from __future__ import annotations

import torch

from dastc.methods.base import AdaptationMethod


class SourceOnly(AdaptationMethod):
    """Cross-entropy (main + aux_weight x aux) on the current frame of each source clip (and the ImageNet
    feature distance when method.fdist is on); target clips unused."""

    def training_losses(self, batch: dict) -> dict[str, torch.Tensor]:
        return self.source_loss(batch["source"])[1]
