"""What every segmentation network returns, and the interfaces networks share.

Two kinds of networks:
- a **frame network** segments one image ``x`` [B, 3, H, W] (RGB in [0, 1]) and can be split after its shallow
  stage: ``encode_shallow(x) -> list[Tensor]``, ``forward_from_shallow(shallow) -> SegmentationOutput`` and
  ``forward(x) == forward_from_shallow(encode_shallow(x))``; ``param_groups()`` names its ``backbone`` and
  ``head`` parameters. The shallow state is a list because some decoders read several early feature maps
  (skip connections); a method that mixes shallow features mixes every tensor of the list.
- a **video network** (``dastc.models.video``) wraps a frame network and segments the current frame of a clip:
  ``forward(frames [B, T, 3, H, W], flow [B, T-1, 2, H, W] | None, shallow=None, fallback=None)
  -> SegmentationOutput``; ``fallback`` [B, H, W] (bool, at the frames' size) marks current-frame pixels
  whose flow is not to be trusted (pasted objects without a valid flow): a network that fuses the previous
  frame uses the current frame's own scores there.

Both kinds also give ``bottleneck_encoder()``: a module from images [B, 3, H, W] to the output's ``bottleneck``
built from the network's own modules, so that a deep copy of it copies the encoder alone (the frozen ImageNet
encoder of the feature distance, dastc.methods.feature_distance).
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
    ``"previous_warped"``); ``previous`` the previous frame's own output (on its own grid, computed without
    gradients) when a video network ran one: the category-aware alignment aggregates it with the current frame.
    ``bottleneck`` is the encoder's last feature map (the current frame's): the ImageNet feature distance
    compares it with a frozen ImageNet encoder's.
    ``detail`` HRDA's detail branch alone on its window (``dastc.models.multires``, training path only): the
    methods' cross-entropy adds its own loss on the labels inside the window.
    """

    logits: torch.Tensor
    aux_logits: torch.Tensor | None = None
    features: torch.Tensor | None = None
    shallow: list[torch.Tensor] | None = None
    branch_logits: dict[str, torch.Tensor] | None = None
    previous: SegmentationOutput | None = None
    bottleneck: torch.Tensor | None = None
    detail: DetailCrop | None = None


@dataclass
class DetailCrop:
    """A frame network's output on one window of its input (HRDA's detail crop, dastc.models.multires).

    ``span`` = (top, bottom, left, right): where the output's first and last rows and columns lie on the whole
    input, as fractions of it, corner-aligned (0: the input's first pixel row or column, 1: its last), as
    ``dastc.methods.losses.upsample_to`` places logits on labels; ``weight`` is HRDA's lambda_d, the share of
    the loss this window's own cross-entropy takes.
    """

    output: SegmentationOutput
    span: tuple[float, float, float, float]
    weight: float
