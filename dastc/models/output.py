"""What every segmentation network returns, and the interfaces networks share.

Two kinds of networks:
- a **frame network** segments one image ``x`` [B, 3, H, W] (RGB in [0, 1]) and can be split after its shallow
  stage: ``encode_shallow(x) -> list[Tensor]``, ``forward_from_shallow(shallow) -> SegmentationOutput`` and
  ``forward(x) == forward_from_shallow(encode_shallow(x))``; ``param_groups()`` names its ``backbone`` and
  ``head`` parameters. The shallow state is a list because some decoders read several early feature maps
  (skip connections); a method that mixes shallow features mixes every tensor of the list.
- a **video network** (``dastc.models.video``) wraps a frame network and segments the current frame of a clip:
  ``forward(frames [B, T, 3, H, W], flow [B, T-1, 2, H, W] | None, shallow=None) -> SegmentationOutput``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SegmentationOutput:
    """Predictions for one image, or for the current frame of a clip.

    ``logits`` [B, C, h, w] is what losses and evaluation use (upsampled to the label size by the method);
    ``aux_logits`` an optional auxiliary head's output (weighted by ``method.aux_weight``); ``features`` the
    deep feature map before the classifier (feature alignment); ``shallow`` the frame network's shallow state
    (current frame); ``branch_logits`` the un-fused per-branch outputs of a video network (``"current"``,
    ``"previous_warped"``).
    """

    logits: torch.Tensor
    aux_logits: torch.Tensor | None = None
    features: torch.Tensor | None = None
    shallow: list[torch.Tensor] | None = None
    branch_logits: dict[str, torch.Tensor] | None = None
