"""Video networks: a frame network applied to a clip (see dastc.models.output for the interfaces)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from dastc.flow.warp import warp
from dastc.models.multires import with_multires
from dastc.models.output import SegmentationOutput


def _per_frame_shallow(shallow: list[torch.Tensor] | None, index: int) -> list[torch.Tensor] | None:
    return None if shallow is None else [s[:, index] for s in shallow]


class VideoNet(nn.Module):
    """Shared plumbing: the frame network, its shallow split over a clip, its parameter groups."""

    uses_previous_frame = True  # whether the output depends on frames before the current one

    def __init__(self, frame_net: nn.Module):
        super().__init__()
        self.frame_net = frame_net
        self.num_classes = frame_net.num_classes

    def encode_shallow(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """Shallow state of every frame: a list of [B, T, C, h, w] tensors (the split point of feature mixing)."""
        b, t = frames.shape[:2]
        per_frame = self.frame_net.encode_shallow(frames.flatten(0, 1))
        return [s.unflatten(0, (b, t)) for s in per_frame]

    def _frame(
        self, frames: torch.Tensor, index: int, shallow: list[torch.Tensor] | None
    ) -> SegmentationOutput:
        state = _per_frame_shallow(shallow, index)
        return (
            self.frame_net(frames[:, index]) if state is None else self.frame_net.forward_from_shallow(state)
        )

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return self.frame_net.param_groups()

    def bottleneck_encoder(self) -> nn.Module:
        return self.frame_net.bottleneck_encoder()


class SingleFrame(VideoNet):
    """Segments the current frame alone: the per-frame baseline."""

    uses_previous_frame = False

    def forward(
        self,
        frames: torch.Tensor,
        flow: torch.Tensor | None = None,
        shallow: list[torch.Tensor] | None = None,
        fallback: torch.Tensor | None = None,
    ) -> SegmentationOutput:
        return self._frame(frames, -1, shallow)


class ACCEL(VideoNet):
    """Flow-guided score fusion of the current and the previous frame (ACCEL, docs/method.md, Model).

    The previous frame goes through the same frame network without gradients; its main and auxiliary logits
    are warped onto the current frame with ``flow[:, -1]`` (current grid -> previous frame, resized to the
    logits' resolution with its vectors scaled; samples falling outside the previous frame read 0). One 1x1
    convolution without bias over concat(current, warped previous), shared by the main and auxiliary outputs,
    fuses them; it starts as the identity on the current half and zero on the warped half, so at step 0 the
    fused output equals the current frame's. A clip of one frame (images) skips the fusion.
    """

    def __init__(self, frame_net: nn.Module):
        super().__init__(frame_net)
        c = self.num_classes
        self.fusion = nn.Conv2d(2 * c, c, 1, bias=False)
        with torch.no_grad():
            self.fusion.weight.zero_()
            self.fusion.weight[:, :c, 0, 0] = torch.eye(c)

    def forward(
        self,
        frames: torch.Tensor,
        flow: torch.Tensor | None = None,
        shallow: list[torch.Tensor] | None = None,
        fallback: torch.Tensor | None = None,
    ) -> SegmentationOutput:
        current = self._frame(frames, -1, shallow)
        if frames.shape[1] < 2:
            return current
        if flow is None:
            raise ValueError("ACCEL needs the flow of the current frame towards the previous one")
        with torch.no_grad():
            previous = self._frame(frames, -2, shallow)
        warped = self._warped(previous.logits, current.logits, flow, fallback)
        fused = self.fusion(torch.cat((current.logits, warped), 1))
        fused_aux = None
        if current.aux_logits is not None:
            warped_aux = self._warped(previous.aux_logits, current.aux_logits, flow, fallback)
            fused_aux = self.fusion(torch.cat((current.aux_logits, warped_aux), 1))
        # The current frame's other fields (features, shallow state, a multi-resolution detail window) go on.
        return replace(
            current,
            logits=fused,
            aux_logits=fused_aux,
            branch_logits={"current": current.logits, "previous_warped": warped},
            previous=previous,
            bottleneck=current.bottleneck,
        )

    @staticmethod
    def _warped(previous, current, flow, fallback):
        """The previous frame's scores on the current grid; where ``fallback`` marks a pixel (resized to the
        scores' grid, nearest), the current frame's own scores instead (the authors' pasted-object rule)."""
        warped = warp(previous, flow[:, -1])
        if fallback is None:
            return warped
        small = F.interpolate(fallback[:, None].float(), size=current.shape[-2:], mode="nearest") > 0.5
        return torch.where(small, current, warped)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """The fusion layer is new, like the classifiers: it trains at the heads' learning rate."""
        groups = self.frame_net.param_groups()
        return {"backbone": groups["backbone"], "head": groups["head"] + list(self.fusion.parameters())}


def accel_deeplabv2(num_classes: int, multires: Mapping | None = None, **deeplab_kwargs) -> ACCEL:
    """``backbone=accel``: ACCEL around DeepLab-v2 (keyword arguments as dastc.models.deeplabv2.DeepLabV2),
    inside HRDA's multi-resolution wrapper when ``multires`` is set (conf/multires/)."""
    from dastc.models.deeplabv2 import DeepLabV2

    return ACCEL(with_multires(DeepLabV2(num_classes, **deeplab_kwargs), multires))
