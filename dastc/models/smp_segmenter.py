"""segmentation-models-pytorch networks as frame networks (see dastc.models.output for the interface).

The shallow split runs the encoder stage by stage, so it is defined for the encoder families whose stages we
know: smp's ResNet encoders (``resnet18`` ... ``resnet152``) and Mix Transformers (``mit_b0`` ... ``mit_b5``,
used by ``Segformer``). The shallow state is the encoder's feature list up to stride 4 (input, stride 2,
stride 4), since smp decoders read early maps as skips; every other encoder still segments, it only cannot
be split for feature-level mixing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import segmentation_models_pytorch as smp
import torch
from segmentation_models_pytorch.encoders.mix_transformer import MixVisionTransformerEncoder
from segmentation_models_pytorch.encoders.resnet import ResNetEncoder
from torch import nn

from dastc.models.input_norm import IMAGENET_MEAN, IMAGENET_STD, InputNorm
from dastc.models.multires import with_multires
from dastc.models.output import SegmentationOutput
from dastc.models.video import ACCEL, SingleFrame
from dastc.models.weights import load_smp_encoder, resolve_smp_encoder

SHALLOW_LEVEL = 3  # features[0:3] = input, stride 2, stride 4


def _resnet_stage(enc: ResNetEncoder, i: int, f: list[torch.Tensor]) -> torch.Tensor:
    """Stage ``i`` (1-based) of smp's ResNet encoder, as in its forward."""
    x = f[-1]
    if i == 1:
        return enc.relu(enc.bn1(enc.conv1(x)))
    if i == 2:
        return enc.layer1(enc.maxpool(x))
    return getattr(enc, f"layer{i - 1}")(x)


def _mit_stage(enc: MixVisionTransformerEncoder, i: int, f: list[torch.Tensor]) -> torch.Tensor:
    """Stage ``i`` (1-based) of smp's Mix Transformer encoder: stride 2 is an empty placeholder, transformer
    stage 1 reads the image itself."""
    if i == 1:
        x = f[0]
        return x.new_empty(x.shape[0], 0, x.shape[2] // 2, x.shape[3] // 2)
    embed, blocks, norm = (getattr(enc, f"{name}{i - 1}") for name in ("patch_embed", "block", "norm"))
    return norm(blocks(embed(f[0] if i == 2 else f[-1]))).contiguous()


def batch_norm_to_group_norm(module: nn.Module, groups: int = 8) -> None:
    """Replace every BatchNorm2d below ``module`` by a GroupNorm of ``groups`` groups (fewer when the channels do
    not divide). Group norm keeps no running statistics, so the passes of an adaptation step over source,
    target and mixed clips cannot pull shared statistics towards a blend of domains that evaluation then uses."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            c = child.num_features
            setattr(module, name, nn.GroupNorm(math.gcd(groups, c), c))
        else:
            batch_norm_to_group_norm(child, groups)


class LastFeature(nn.Module):
    """The last map of an smp encoder's feature list."""

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return features[-1]


# Stage functions per encoder family; looked up at call time (no closures: the EMA teacher is a deep copy).
STAGES = {ResNetEncoder: _resnet_stage, MixVisionTransformerEncoder: _mit_stage}


class SmpSegmenter(nn.Module):
    """Any ``smp.create_model`` architecture.

    ``pretrained``: None (random init), ``"imagenet"`` (smp's ImageNet encoder weights, from the Hugging Face
    cache or downloaded into it, as smp's ``encoder_weights="imagenet"`` does) or a local file of encoder
    weights (smp's ``model.safetensors``, a torchvision ResNet file, SegFormer's ``mit_b*.pth``). Input frames
    are RGB in [0, 1], normalised inside with ``input_mean``/``input_std``. Encoder stages an ``encoder_depth``
    below 5 never uses are removed, so that every parameter trains (DDP needs that).
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
        norm: str = "batch",
        pretrained: str | None = None,
        **smp_kwargs,
    ):
        super().__init__()
        if norm not in ("batch", "group"):
            raise ValueError(f"backbone.norm must be 'batch' or 'group', got {norm!r}")
        if decoder_channels is not None:
            smp_kwargs["decoder_channels"] = tuple(decoder_channels)
        weights = resolve_smp_encoder(encoder_name, pretrained)  # fetched (or failing) before building
        self.net = smp.create_model(
            arch,
            encoder_name=encoder_name,
            encoder_weights=None,
            encoder_depth=encoder_depth,
            classes=num_classes,
            **smp_kwargs,
        )
        if weights is not None:  # before norm="group" replaces the batch norms (their ImageNet values go)
            load_smp_encoder(self.net.encoder, weights, encoder_name)
        if norm == "group":
            batch_norm_to_group_norm(self.net)
        self.num_classes = num_classes
        self.encoder_depth = encoder_depth
        self.input_norm = InputNorm("torchvision", input_mean, input_std)
        encoder = self.net.encoder
        self._stage = next((fn for cls, fn in STAGES.items() if isinstance(encoder, cls)), None)
        if isinstance(encoder, ResNetEncoder):
            for name in ("layer2", "layer3", "layer4")[max(encoder_depth - 2, 0) :]:
                delattr(encoder, name)

    def encode_shallow(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self._stage is None:
            raise ValueError(
                f"encoder {type(self.net.encoder).__name__} has no known shallow split; feature-level mixing "
                "needs backbone=accel or an smp resnet*/mit_b* encoder"
            )
        features = [self.input_norm(x)]
        for i in range(1, min(SHALLOW_LEVEL, self.encoder_depth + 1)):
            features.append(self._stage(self.net.encoder, i, features))
        return features

    def forward_from_shallow(self, shallow: list[torch.Tensor]) -> SegmentationOutput:
        features = list(shallow)
        for i in range(len(features), self.encoder_depth + 1):
            features.append(self._stage(self.net.encoder, i, features))
        return self._decode(features, shallow)

    def forward(self, x: torch.Tensor) -> SegmentationOutput:
        if self._stage is None:
            return self._decode(self.net.encoder(self.input_norm(x)), None)
        return self.forward_from_shallow(self.encode_shallow(x))

    def _decode(self, features: list[torch.Tensor], shallow) -> SegmentationOutput:
        decoded = self.net.decoder(features)
        return SegmentationOutput(
            logits=self.net.segmentation_head(decoded),
            features=decoded,
            shallow=shallow,
            bottleneck=features[-1],
        )

    def bottleneck_encoder(self) -> nn.Module:
        """Images -> the encoder's last feature map (see dastc.models.output)."""
        return nn.Sequential(self.input_norm, self.net.encoder, LastFeature())

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """``head``: the classifier (trained at ``method.optim.head_lr_mult`` x lr); ``backbone``: the rest."""
        head = list(self.net.segmentation_head.parameters())
        head_ids = {id(p) for p in head}
        return {"backbone": [p for p in self.parameters() if id(p) not in head_ids], "head": head}


def smp_video(
    num_classes: int, temporal: str = "flow_fusion", multires: Mapping | None = None, **smp_kwargs
) -> nn.Module:
    """An smp frame network inside a video network: ``temporal="flow_fusion"`` (ACCEL's two-frame score fusion)
    or ``"current_frame"`` (the current frame alone); inside HRDA's multi-resolution wrapper when ``multires``
    is set (conf/multires/)."""
    wrappers = {"flow_fusion": ACCEL, "current_frame": SingleFrame}
    if temporal not in wrappers:
        raise ValueError(f"backbone.temporal must be one of {sorted(wrappers)}, got {temporal!r}")
    return wrappers[temporal](with_multires(SmpSegmenter(num_classes, **smp_kwargs), multires))
