"""Multi-resolution training and inference (HRDA, Hoyer et al. ECCV 2022; docs/method.md, Multi-resolution
training and inference) around any frame network.

``MultiResolution`` is itself a frame network (see dastc.models.output), so the video networks wrap it
unchanged. It segments the input twice with the same network: a **context** pass over the whole input
downscaled by ``context_scale``, and a **detail** pass at full resolution over a window of ``detail_fraction``
of each side; a scale-attention head on the context features weighs the two, per class:
``fused = (1 - a) * context + a * detail`` where the detail pass ran, the context alone elsewhere.

- training (``self.training``, the student): one window at a random place (drawn from the global CPU random
  stream, so resumes stay exact); the output also carries the window's own prediction (``detail``), which the
  methods' cross-entropy supervises with HRDA's lambda_d (dastc.methods.losses.segmentation_loss);
- inference (eval mode: validation, prediction, the teacher that makes pseudo-labels): windows slide over the
  whole input every ``sliding_stride`` window, overlaps averaged, and the attention fuses everywhere.

Where the network is split: the shallow state is the context pass's shallow state followed by the
full-resolution input's own, and the windows are cut from the latter. Feature-level mixing (DA-STC) therefore
mixes whole frames at both resolutions, with the masks of the whole frames, and the window is drawn after
mixing: ``forward(x) == forward_from_shallow(encode_shallow(x))`` holds and two clips need not share a window.
(HRDA crops the image itself; here the window's shallow features near its border see the pixels beyond it.)

Positions across grids are corner-aligned fractions of the input (the first and last cell of any map lie on
the input's first and last pixel, as the project resizes logits), so a window's prediction lands on the fused
map, and on labels of any size, by bilinear sampling at the right places.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from dastc.models.output import DetailCrop, SegmentationOutput

_EPS = 1e-6  # in cells: positions this close to a cell count as on it


@dataclass(frozen=True)
class Window:
    """One window: the slices ``(row0, row1, col0, col1)`` it cuts from each full-resolution shallow map, and
    the ``span`` (top, bottom, left, right) of the finest map's cells it holds, as fractions of the input."""

    slices: tuple[tuple[int, int, int, int], ...]
    span: tuple[float, float, float, float]


class ScaleAttention(nn.Module):
    """HRDA's scale attention on the context features: sigmoid of a light head, one map per class
    (``classwise``, as HRDA) or a single map. HRDA's head is a lightweight copy of its decoder (1x1 embedding,
    1x1 fusion, ReLU, 1x1 classifier); on the one feature map a frame network gives: 1x1 conv, ReLU, 1x1 conv."""

    def __init__(self, in_channels: int, num_classes: int, channels: int = 256, classwise: bool = True):
        super().__init__()
        self.embed = nn.Conv2d(in_channels, channels, 1)
        self.classifier = nn.Conv2d(channels, num_classes if classwise else 1, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.classifier(F.relu(self.embed(features))))


class MultiResolution(nn.Module):
    """HRDA's context and detail passes of ``frame_net`` fused by a learnt scale attention (module docstring).

    The fused ``logits`` (and ``aux_logits`` when the frame network has an auxiliary head) lie on one grid over
    the whole input at the detail pass's output pitch (the frame network's own output stride at full
    resolution); ``features`` are the context pass's (the whole input, at ``context_scale``: what the
    category-aware alignment aggregates); ``shallow`` is this network's shallow state.
    """

    def __init__(
        self,
        frame_net: nn.Module,
        context_scale: float = 0.5,
        detail_fraction: float = 0.5,
        detail_loss_weight: float = 0.1,
        sliding_stride: float = 0.5,
        attention_classwise: bool = True,
        attention_channels: int = 256,
        context_multiple: int = 8,
        detail_multiple: int = 8,
    ):
        super().__init__()
        for key, value in (
            ("context_scale", context_scale),
            ("detail_fraction", detail_fraction),
            ("sliding_stride", sliding_stride),
        ):
            if not 0 < value <= 1:
                raise ValueError(f"multires.{key} must lie in (0, 1], got {value}")
        if not 0 <= detail_loss_weight <= 1:
            raise ValueError(f"multires.detail_loss_weight must lie in [0, 1], got {detail_loss_weight}")
        self.frame_net = frame_net
        self.num_classes = frame_net.num_classes
        self.context_scale, self.detail_fraction = context_scale, detail_fraction
        self.detail_loss_weight, self.sliding_stride = detail_loss_weight, sliding_stride
        self.context_multiple, self.detail_multiple = context_multiple, detail_multiple
        self.attention = ScaleAttention(
            feature_channels(frame_net), self.num_classes, attention_channels, attention_classwise
        )

    # --- the frame-network interface --------------------------------------------------------------------------
    def encode_shallow(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The context pass's shallow state, then the full-resolution input's."""
        context = context_input(x, self.context_scale, self.context_multiple)
        return [*self.frame_net.encode_shallow(context), *self.frame_net.encode_shallow(x)]

    def forward_from_shallow(self, shallow: list[torch.Tensor]) -> SegmentationOutput:
        half = len(shallow) // 2
        context = self.frame_net.forward_from_shallow(list(shallow[:half]))
        attention = self.attention(context.features)
        full = list(shallow[half:])
        windows = [self.random_window(full)] if self.training else self.sliding_windows(full)
        cut = [
            [s[..., r0:r1, c0:c1] for r0, r1, c0, c1 in (w.slices[k] for w in windows)]
            for k, s in enumerate(full)
        ]
        detail = self.frame_net.forward_from_shallow([c[0] if len(c) == 1 else torch.cat(c) for c in cut])
        logits = fuse(context.logits, detail.logits, attention, windows)
        aux = None
        if context.aux_logits is not None and detail.aux_logits is not None:
            aux = fuse(context.aux_logits, detail.aux_logits, attention, windows)
        crop = DetailCrop(detail, windows[0].span, self.detail_loss_weight) if self.training else None
        return replace(context, logits=logits, aux_logits=aux, shallow=list(shallow), detail=crop)

    def forward(self, x: torch.Tensor) -> SegmentationOutput:
        return self.forward_from_shallow(self.encode_shallow(x))

    def bottleneck_encoder(self) -> nn.Module:
        """Images -> the bottleneck this network reports: the context pass's, so the input is first brought to
        the context size (the ImageNet feature distance compares the two on one grid)."""
        return ContextScaled(self.frame_net.bottleneck_encoder(), self.context_scale, self.context_multiple)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """The attention head is new, like the classifiers: it trains at the heads' learning rate."""
        groups = self.frame_net.param_groups()
        return {"backbone": groups["backbone"], "head": groups["head"] + list(self.attention.parameters())}

    # --- where the passes look --------------------------------------------------------------------------------
    def context_size(self, height: int, width: int) -> tuple[int, int]:
        """The context pass's input size: the input's x ``context_scale``, sides rounded to multiples of
        ``context_multiple`` (networks that halve their input several times need it)."""
        return context_size(height, width, self.context_scale, self.context_multiple)

    def window_side(self, cells: int) -> int:
        """A window's side in cells of the coarsest shallow map: ``detail_fraction`` of it, a multiple of
        ``detail_multiple`` (the network's stages after the split must still divide it)."""
        m = self.detail_multiple
        return min(cells, max(min(m, cells), round(self.detail_fraction * cells / m) * m))

    def random_window(self, full: list[torch.Tensor]) -> Window:
        """The training window: a random place on the coarsest shallow map, from the global CPU stream."""
        height, width = coarsest(full)
        sides = self.window_side(height), self.window_side(width)
        top = int(torch.randint(0, height - sides[0] + 1, (), device="cpu"))
        left = int(torch.randint(0, width - sides[1] + 1, (), device="cpu"))
        return window(full, (top, left), sides)

    def sliding_windows(self, full: list[torch.Tensor]) -> list[Window]:
        """Inference: windows every ``sliding_stride`` window over the whole map, the last flush with its end
        (as mmsegmentation's and HRDA's slide inference place them)."""
        height, width = coarsest(full)
        sides = self.window_side(height), self.window_side(width)
        rows, cols = (
            slide_positions(n, side, max(1, round(self.sliding_stride * side)))
            for n, side in zip((height, width), sides, strict=True)
        )
        return [window(full, (top, left), sides) for top in rows for left in cols]


def context_size(height: int, width: int, scale: float, multiple: int) -> tuple[int, int]:
    """``height`` x ``width`` scaled by ``scale``, sides rounded to multiples of ``multiple`` (at most the input)."""
    return tuple(min(n, max(multiple, round(n * scale / multiple) * multiple)) for n in (height, width))


def context_input(x: torch.Tensor, scale: float, multiple: int) -> torch.Tensor:
    """Images [B, 3, H, W] resized (bilinear) to the context pass's input size."""
    size = context_size(*x.shape[-2:], scale, multiple)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ContextScaled(nn.Module):
    """``module`` applied to its input resized as the context pass resizes it."""

    def __init__(self, module: nn.Module, scale: float, multiple: int):
        super().__init__()
        self.module, self.scale, self.multiple = module, scale, multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(context_input(x, self.scale, self.multiple))


def with_multires(frame_net: nn.Module, multires: Mapping | None) -> nn.Module:
    """``frame_net`` itself, or wrapped in MultiResolution when the run sets ``multires`` (conf/multires/)."""
    return frame_net if not multires else MultiResolution(frame_net, **dict(multires))


def feature_channels(frame_net: nn.Module) -> int:
    """The channels of the frame network's ``features``, from one small pass in eval mode (no statistics move,
    no random number is drawn)."""
    was_training = frame_net.training
    parameter = next(frame_net.parameters())
    try:
        frame_net.eval()
        with torch.no_grad():
            out = frame_net(torch.zeros(1, 3, 64, 64, device=parameter.device, dtype=parameter.dtype))
    finally:
        frame_net.train(was_training)
    if out.features is None:
        raise ValueError("multires needs a frame network that returns its features (the attention's input)")
    return out.features.shape[1]


# --- windows on the shallow maps ------------------------------------------------------------------------------
def coarsest(full: list[torch.Tensor]) -> tuple[int, int]:
    """Height and width of the coarsest shallow map: the grid windows are placed on."""
    return min((tuple(s.shape[-2:]) for s in full), key=lambda hw: hw[0] * hw[1])


def slide_positions(cells: int, side: int, stride: int) -> list[int]:
    """Window starts every ``stride`` cells, the last one flush with the end."""
    count = max(cells - side + stride - 1, 0) // stride + 1
    return [min(i * stride, cells - side) for i in range(count)]


def _nested(start: int, size: int, coarse: int, fine: int) -> tuple[int, int]:
    """The cells of a ``fine``-cell axis under cells [start, start + size) of a ``coarse``-cell one: each coarse
    cell covers fine // coarse fine ones when the grids nest (strided maps of one input), else the same
    fraction of the axis, rounded."""
    if fine % coarse == 0:
        ratio = fine // coarse
        return start * ratio, (start + size) * ratio
    first = round(start * fine / coarse)
    return first, min(fine, max(first + 1, round((start + size) * fine / coarse)))


def window(full: list[torch.Tensor], start: tuple[int, int], sides: tuple[int, int]) -> Window:
    """The window whose cells on the coarsest map are ``start`` + ``sides``, on every shallow map."""
    height, width = coarsest(full)
    slices = tuple(
        (*_nested(start[0], sides[0], height, s.shape[-2]), *_nested(start[1], sides[1], width, s.shape[-1]))
        for s in full
    )
    finest = max(range(len(full)), key=lambda k: full[k].shape[-2] * full[k].shape[-1])
    r0, r1, c0, c1 = slices[finest]
    h, w = full[finest].shape[-2:]
    span = (_fraction(r0, h), _fraction(r1 - 1, h), _fraction(c0, w), _fraction(c1 - 1, w))
    return Window(slices, span)


def _fraction(cell: int, cells: int) -> float:
    return cell / (cells - 1) if cells > 1 else 0.0


# --- from a window's grid to another grid ---------------------------------------------------------------------
def cells_inside(low: float, high: float, cells: int) -> tuple[int, int]:
    """The cells [first, stop) of a ``cells``-cell axis over the whole input whose positions lie in
    [low, high] (fractions of the input, corner-aligned)."""
    if cells == 1:
        return (0, 1) if low <= _EPS else (0, 0)
    first = math.ceil(low * (cells - 1) - _EPS)
    stop = math.floor(high * (cells - 1) + _EPS) + 1
    return max(first, 0), min(stop, cells)


def _interpolation(
    cells: tuple[int, int], span: tuple[float, float], total: int, source: int, like: torch.Tensor
) -> torch.Tensor:
    """[stop - first, source]: linear interpolation weights that sample a ``source``-cell axis spanning
    ``span`` of the input at cells [first, stop) of a ``total``-cell axis over the whole input."""
    positions = torch.arange(*cells, device=like.device, dtype=torch.float32) / max(total - 1, 1)
    low, high = span
    at = (positions - low) / (high - low) * (source - 1) if high > low else positions * 0
    at = at.clamp(0, source - 1)
    at = torch.where((at - at.round()).abs() < 1e-4, at.round(), at)  # on a cell: exactly that cell
    base = at.floor().clamp(max=max(source - 2, 0))[:, None]
    frac = at[:, None] - base
    cells = torch.arange(source, device=like.device, dtype=torch.float32)
    # each row: 1 - frac on its cell below, frac on the one above (no scatter: deterministic on any device)
    weights = (cells == base) * (1 - frac) + (cells == base + 1) * frac
    return weights.to(like.dtype)


def sample_span(
    values: torch.Tensor, span: tuple[float, float, float, float], size: tuple[int, int]
) -> tuple[tuple[int, int], tuple[int, int], torch.Tensor]:
    """``values`` [N, C, h, w], whose first and last rows and columns lie at ``span`` (top, bottom, left, right;
    fractions of the input), sampled bilinearly at the cells of a ``size`` grid over the whole input that fall
    inside the span. Returns (row first, stop), (column first, stop) and the samples [N, C, rows, columns]."""
    rows = cells_inside(span[0], span[1], size[0])
    cols = cells_inside(span[2], span[3], size[1])
    down = _interpolation(rows, span[:2], size[0], values.shape[-2], values)
    across = _interpolation(cols, span[2:], size[1], values.shape[-1], values)
    return rows, cols, down @ values @ across.T


def fused_size(cells: tuple[int, int], span: tuple[float, float, float, float]) -> tuple[int, int]:
    """The grid over the whole input at the pitch of a window's ``cells`` (h, w) spanning ``span``."""
    return tuple(
        round((n - 1) / (high - low)) + 1 if n > 1 and high > low else n
        for n, low, high in ((cells[0], span[0], span[1]), (cells[1], span[2], span[3]))
    )


def paste(
    values: torch.Tensor, windows: list[Window], size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The windows' predictions ``values`` [windows x N, C, h, w] (window-major) on a ``size`` grid over the
    whole input, averaged where windows overlap, 0 where none lies; and [1, 1, *size]: 1 where one lies."""
    total = values.new_zeros(values.shape[0] // len(windows), values.shape[1], *size)
    count = values.new_zeros(1, 1, *size)
    for part, w in zip(values.chunk(len(windows)), windows, strict=True):
        (r0, r1), (c0, c1), samples = sample_span(part, w.span, size)
        pad = (c0, size[1] - c1, r0, size[0] - r1)
        total = total + F.pad(samples, pad)
        count = count + F.pad(values.new_ones(1, 1, r1 - r0, c1 - c0), pad)
    return total / count.clamp(min=1), (count > 0).to(values.dtype)


def fuse(
    context: torch.Tensor, detail: torch.Tensor, attention: torch.Tensor, windows: list[Window]
) -> torch.Tensor:
    """HRDA's fusion on the grid at the detail windows' pitch: (1 - a) * context + a * detail, the attention
    ``a`` set to 0 where no window lies (the context alone there). Context logits and attention are resized
    to that grid corner-aligned, like every resize of logits in the project."""
    size = fused_size(tuple(detail.shape[-2:]), windows[0].span)
    detail, covered = paste(detail, windows, size)
    a = F.interpolate(attention, size=size, mode="bilinear", align_corners=True) * covered
    up = F.interpolate(context, size=size, mode="bilinear", align_corners=True)
    return (1 - a) * up + a * detail
