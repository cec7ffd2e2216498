"""A per-frame segmenter from segmentation-models-pytorch, behind the video interface."""

from __future__ import annotations

from collections.abc import Sequence

import segmentation_models_pytorch as smp
import torch
from torch import nn

from dastc.models.output import SegmentationOutput

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class SmpFrameSegmenter(nn.Module):
    """Segments the current frame of a clip with any ``smp.create_model`` architecture.

    Input frames are RGB in [0, 1]; the network normalises them with ``input_mean``/``input_std`` (the
    statistics of its weights). Weights start at random (``encoder_weights=None``): nothing is downloaded.
    """

    def __init__(
        self,
        num_classes: int,
        arch: str = "Unet",
        encoder_name: str = "resnet18",
        encoder_depth: int = 5,
        decoder_channels: Sequence[int] | None = None,
        input_mean: Sequence[float] = IMAGENET_MEAN,
        input_std: Sequence[float] = IMAGENET_STD,
        **smp_kwargs,
    ):
        super().__init__()
        if decoder_channels is not None:
            smp_kwargs["decoder_channels"] = tuple(decoder_channels)
        self.net = smp.create_model(
            arch,
            encoder_name=encoder_name,
            encoder_weights=None,
            encoder_depth=encoder_depth,
            classes=num_classes,
            **smp_kwargs,
        )
        self.num_classes = num_classes
        self.register_buffer("input_mean", torch.tensor(input_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("input_std", torch.tensor(input_std).view(1, 3, 1, 1), persistent=False)

    def forward(self, frames: torch.Tensor, flow: torch.Tensor | None = None) -> SegmentationOutput:
        """``frames`` [B, T, 3, H, W] in [0, 1]; only the current frame ``frames[:, -1]`` is used."""
        x = (frames[:, -1] - self.input_mean) / self.input_std
        features = self.net.decoder(self.net.encoder(x))
        return SegmentationOutput(logits=self.net.segmentation_head(features), features=features)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """``head``: the classifier (trained at ``method.optim.head_lr_mult`` x lr); ``backbone``: the rest."""
        head = list(self.net.segmentation_head.parameters())
        head_ids = {id(p) for p in head}
        return {"backbone": [p for p in self.parameters() if id(p) not in head_ids], "head": head}
