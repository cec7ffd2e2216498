"""DeepLab-v2 on a dilated ResNet with frozen batch norm (docs/method.md, Model (ACCEL on DeepLab-v2)).

ResNet-{18,34,50,101} trunk, layer3 dilated by 2 and layer4 by 4 (every block of the layer, as in DeepLab-v2),
output stride 8, max-pool with ``ceil_mode`` as in the Caffe original. Batch norm is frozen: its statistics and
affine parameters never change, in ``train()`` mode too (the peers left it training with batch size 1 by
accident). Heads: an auxiliary DeepLab-v2 classifier on layer3 and, on layer4, either DA-STC's main head
(``head="deeplabv2"``: four dilated 3x3 convolutions to 256 channels, summed, Dropout2d, 1x1 to the classes;
the 256-d sum is the deep feature) or the plain DeepLab-v2 ASPP classifier of TPS/DA-VSN (``head="aspp"``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from dastc.models.input_norm import InputNorm
from dastc.models.output import SegmentationOutput
from dastc.models.weights import load_imagenet_resnet, resolve_resnet

DILATIONS = (6, 12, 18, 24)
SPLITS = ("stem", "layer1", "layer2")


class FrozenBatchNorm2d(nn.BatchNorm2d):
    """Batch norm that always normalises with its stored statistics and never trains its affine parameters.

    Unlike ``torchvision.ops.FrozenBatchNorm2d`` the affine terms stay parameters (with ``requires_grad=False``),
    so parameter counts match the published ones and torchvision state dicts load unchanged.
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__(num_features, eps=eps)
        self.weight.requires_grad_(False)
        self.bias.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
        )


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, dilation=1, downsample=None, stride_in_1x1=False):
        super().__init__()
        s1, s2 = (stride, 1) if stride_in_1x1 else (1, stride)  # Caffe puts the stride in the 1x1 convolution
        self.conv1 = nn.Conv2d(inplanes, planes, 1, stride=s1, bias=False)
        self.bn1 = FrozenBatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=s2, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = FrozenBatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = FrozenBatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, dilation=1, downsample=None, stride_in_1x1=False):
        super().__init__()
        self.conv1 = nn.Conv2d(
            inplanes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
        )
        self.bn1 = FrozenBatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = FrozenBatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


ARCHS = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
}


class DilatedResNet(nn.Module):
    """The trunk. Module names follow torchvision's ResNet, so its state dicts load directly."""

    def __init__(self, depth: int = 101, stride_in_1x1: bool = False):
        super().__init__()
        if depth not in ARCHS:
            raise ValueError(f"ResNet depth must be one of {sorted(ARCHS)}, got {depth}")
        block, layers = ARCHS[depth]
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = FrozenBatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        self.layer1 = self._make_layer(block, 64, layers[0], 1, 1, stride_in_1x1)
        self.layer2 = self._make_layer(block, 128, layers[1], 2, 1, stride_in_1x1)
        self.layer3 = self._make_layer(block, 256, layers[2], 1, 2, stride_in_1x1)
        self.layer4 = self._make_layer(block, 512, layers[3], 1, 4, stride_in_1x1)
        self.channels = {
            "stem": 64,
            "layer1": 64 * block.expansion,
            "layer2": 128 * block.expansion,
            "layer3": 256 * block.expansion,
            "layer4": 512 * block.expansion,
        }

    def _make_layer(self, block, planes, blocks, stride, dilation, stride_in_1x1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion or dilation > 1:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                FrozenBatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, dilation, downsample, stride_in_1x1)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, 1, dilation, None, stride_in_1x1) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """layer4's output of normalised images: the bottleneck (DeepLabV2 runs the stages itself, split)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class ClassifierModule(nn.Module):
    """DeepLab-v2's ASPP classifier: the sum of four dilated 3x3 convolutions (with bias)."""

    def __init__(self, in_channels: int, out_channels: int, dilations=DILATIONS):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(in_channels, out_channels, 3, padding=d, dilation=d, bias=True) for d in dilations
        )
        for conv in self.convs:
            nn.init.normal_(conv.weight, 0.0, 0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, x):
        return sum(conv(x) for conv in self.convs)


class FeatureHead(nn.Module):
    """DA-STC's main head: ASPP to 256 channels (the deep feature), Dropout2d(0.1), 1x1 to C without bias."""

    def __init__(self, in_channels: int, num_classes: int, feature_channels: int = 256, dropout: float = 0.1):
        super().__init__()
        self.aspp = ClassifierModule(in_channels, feature_channels)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(feature_channels, num_classes, 1, bias=False)
        nn.init.normal_(self.classifier.weight, 0.0, 0.01)

    def forward(self, x):
        features = self.aspp(x)
        return self.classifier(self.dropout(features)), features


class ASPPHead(nn.Module):
    """TPS/DA-VSN's main head: the ASPP classifier straight to C; the deep feature is layer4's output."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.aspp = ClassifierModule(in_channels, num_classes)

    def forward(self, x):
        return self.aspp(x), x


class DeepLabV2(nn.Module):
    """A DeepLab-v2 frame network (see dastc.models.output for the interface).

    ``pretrained``: ``"imagenet"`` (torchvision's ImageNet ResNet, from the torch cache or downloaded into it),
    a local ImageNet ResNet file, or None for random weights. ``weights_format``: "torchvision", "caffe" (the
    Caffe-converted ``DeepLab_resnet_pretrained_imagenet.pth``) or "auto" (the file's own; torchvision without
    one). The input normalisation and the stride placement follow the format. dastc.train resolves
    ``imagenet`` first (dastc.models.weights.resolve_pretrained), preferring the Caffe file under
    ``${paths.data_dir}/weights/``; here, without a data directory, ``imagenet`` is torchvision's.
    """

    def __init__(
        self,
        num_classes: int,
        depth: int = 101,
        head: str = "deeplabv2",
        shallow_split: str = "layer1",
        pretrained: str | None = None,
        weights_format: str = "auto",
        dropout: float = 0.1,
        activation_checkpointing: bool = False,
    ):
        super().__init__()
        # Recompute the trunk's blocks in the backward pass instead of storing their activations: less memory
        # at the paper's resolution for about one more forward pass of compute. Results are unchanged.
        self.activation_checkpointing = activation_checkpointing
        if head not in ("deeplabv2", "aspp"):
            raise ValueError(f"backbone.head must be 'deeplabv2' or 'aspp', got {head!r}")
        if shallow_split not in SPLITS:
            raise ValueError(f"backbone.shallow_split must be one of {SPLITS}, got {shallow_split!r}")
        self.num_classes = num_classes
        self.shallow_split = shallow_split
        # The weights' format is settled before building: it places the strides and normalises the input.
        weights, weights_format = resolve_resnet(pretrained, weights_format, depth)
        self.weights_format = weights_format
        self.input_norm = InputNorm(weights_format)
        self.trunk = DilatedResNet(depth, stride_in_1x1=weights_format == "caffe")
        channels = self.trunk.channels
        self.aux_head = ClassifierModule(channels["layer3"], num_classes)
        self.head = (
            FeatureHead(channels["layer4"], num_classes, dropout=dropout)
            if head == "deeplabv2"
            else ASPPHead(channels["layer4"], num_classes)
        )
        if weights is not None:
            load_imagenet_resnet(self.trunk, weights, weights_format, depth)

    def encode_shallow(self, x: torch.Tensor) -> list[torch.Tensor]:
        t = self.trunk
        x = t.maxpool(t.relu(t.bn1(t.conv1(self.input_norm(x)))))
        for name in SPLITS[1 : SPLITS.index(self.shallow_split) + 1]:
            x = getattr(t, name)(x)
        return [x]

    def forward_from_shallow(self, shallow: list[torch.Tensor]) -> SegmentationOutput:
        t = self.trunk
        x = shallow[-1]
        for name in ("layer1", "layer2")[SPLITS.index(self.shallow_split) :]:
            x = self._layer(getattr(t, name), x)
        mid = self._layer(t.layer3, x)
        bottleneck = self._layer(t.layer4, mid)
        logits, features = self.head(bottleneck)
        return SegmentationOutput(
            logits=logits,
            aux_logits=self.aux_head(mid),
            features=features,
            shallow=shallow,
            bottleneck=bottleneck,
        )

    def forward(self, x: torch.Tensor) -> SegmentationOutput:
        return self.forward_from_shallow(self.encode_shallow(x))

    def bottleneck_encoder(self) -> nn.Module:
        """Images -> layer4's output (see dastc.models.output)."""
        return nn.Sequential(self.input_norm, self.trunk)

    def _layer(self, layer: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        if not (self.activation_checkpointing and torch.is_grad_enabled()):
            return layer(x)
        for block in layer:  # frozen batch norm and no dropout in the blocks: recomputation is exact
            x = checkpoint(block, x, use_reentrant=False)
        return x

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trunk at the base lr, both classifiers at ``head_lr_mult`` x (docs/method.md, Optimisation)."""
        return {
            "backbone": list(self.trunk.parameters()),
            "head": list(self.aux_head.parameters()) + list(self.head.parameters()),
        }
