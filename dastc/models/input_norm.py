"""Input normalisation that follows the weights a network was trained with (docs/method.md, Model)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The Caffe-converted DeepLab_resnet_pretrained_imagenet.pth expects BGR in [0, 255] minus this mean, no std.
CAFFE_BGR_MEAN = (104.00698793, 116.66876762, 122.67891434)


class InputNorm(nn.Module):
    """Maps RGB frames in [0, 1] to what the weights expect.

    ``style="torchvision"``: RGB, ``(x - mean) / std`` with ``mean``/``std`` in [0, 1] units (ImageNet by
    default). ``style="caffe"``: BGR, ``255 x - CAFFE_BGR_MEAN``, no std division.
    """

    def __init__(
        self,
        style: str = "torchvision",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ):
        super().__init__()
        if style not in ("torchvision", "caffe"):
            raise ValueError(f"input normalisation style must be 'torchvision' or 'caffe', got {style!r}")
        self.style = style
        if style == "caffe":
            mean, std, scale = mean or CAFFE_BGR_MEAN, std or (1.0, 1.0, 1.0), 255.0
        else:
            mean, std, scale = mean or IMAGENET_MEAN, std or IMAGENET_STD, 1.0
        self.scale = scale
        self.register_buffer(
            "mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.style == "caffe":
            x = x.flip(1)  # RGB -> BGR
        return (x * self.scale - self.mean) / self.std

    def zero_colour(self) -> torch.Tensor:
        """The RGB colour [3] in [0, 1] that this normalisation maps to 0 (the weights' mean colour)."""
        colour = self.mean.view(3) / self.scale
        return colour.flip(0) if self.style == "caffe" else colour  # the Caffe mean is BGR
