"""Masked image consistency (MIC, Hoyer et al., CVPR 2023; docs/method.md, Masked image consistency): the
student also sees its target view with random square patches masked out and learns the teacher's pseudo-labels
of the unmasked clip, so that it has to recognise what it cannot see from the context around it. This module
holds the mask, the masking and the pseudo-label quality weight; ``TPS.mic_loss`` puts them together."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from dastc.models.input_norm import InputNorm


@dataclass
class MICConfig:
    enabled: bool = False  # off: the paper's DA-STC has no MIC
    patch_size: int = 64  # side of a mask cell in pixels of the student's input (MIC: 64 at 512x1024)
    mask_ratio: float = 0.7  # probability that a cell is masked (MIC)
    weight: float = 1.0  # MIC's lambda_m on the masked loss
    quality_threshold: float = (
        0.968  # a pseudo-label counts as confident from this confidence on (DAFormer/MIC)
    )


def patch_mask(
    batch: int,
    height: int,
    width: int,
    patch_size: int,
    ratio: float,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Which pixels are masked, [B, 1, H, W] bool (True: masked): a grid of ``patch_size`` px cells from the
    top-left corner (cells at the right and bottom edges partial when the sides do not divide), each masked
    where a uniform draw per cell is below ``ratio``, as MIC's block mask does. The draws come from the CPU
    (``generator``, else the global CPU stream), so a seed gives the same mask on any device; the mask is made
    on ``device``."""
    if patch_size < 1:
        raise ValueError(f"MIC patch_size must be >= 1, got {patch_size}")
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"MIC mask_ratio must be in [0, 1], got {ratio}")
    cells = (batch, 1, math.ceil(height / patch_size), math.ceil(width / patch_size))
    masked = torch.rand(cells, generator=generator, device="cpu") < ratio
    masked = masked.to(device).repeat_interleave(patch_size, 2).repeat_interleave(patch_size, 3)
    return masked[:, :, :height, :width]


def mask_clips(frames: torch.Tensor, masked: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """Clips [B, T, 3, H, W] with each clip's mask [B, 1, H, W] applied to every one of its frames (one mask
    per clip, so the temporal fusion sees the same holes in t-1 and t); masked pixels take the colour ``fill``
    [3] (see ``normalised_zero``)."""
    return torch.where(masked[:, None], fill.to(frames).view(1, 1, 3, 1, 1), frames)


def normalised_zero(network: nn.Module, like: torch.Tensor) -> torch.Tensor:
    """The RGB colour [3] in [0, 1] that ``network``'s input normalisation maps to 0, on ``like``'s device.

    MIC zeroes the normalised image, so a masked pixel enters the first layer as 0: the mean colour of the
    weights' normalisation. Our frames are raw RGB in [0, 1], normalised inside the network
    (dastc.models.input_norm), so masking them to that mean colour reproduces MIC; masking them to 0 (black)
    would feed the first layer about -2 per channel (ImageNet's (0 - 0.45) / 0.23), a dark signal MIC never
    shows. A network without ``InputNorm`` takes the frames as they are: its zero is black."""
    for module in network.modules():
        if isinstance(module, InputNorm):
            return module.zero_colour().to(like)
    return like.new_zeros(3)


def pseudo_label_quality(
    confidence: torch.Tensor, labels: torch.Tensor, threshold: float, ignore_index: int = 255
) -> torch.Tensor:
    """Per clip [B], the share of its non-ignored pseudo-labels [B, H, W] whose confidence [B, H, W] is at least
    ``threshold``: DAFormer's pseudo-label quality weight, which MIC's masked loss uses (DAFormer counts
    ``>=`` over the whole batch; here per clip, the same with the video benchmarks' batch of 1). 0 for a clip
    whose every pixel is ignored."""
    valid = labels != ignore_index
    confident = (confidence >= threshold) & valid
    return confident.flatten(1).sum(1).float() / valid.flatten(1).sum(1).clamp(min=1).float()
