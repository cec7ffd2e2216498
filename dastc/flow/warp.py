"""Backward warping with the flow orientation of :mod:`dastc.flow`."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def resize_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a [B, 2, H, W] flow bilinearly to ``size`` and scale its vectors by the size ratio (x, y apart)."""
    h, w = flow.shape[-2:]
    if (h, w) == tuple(size):
        return flow
    out = F.interpolate(flow, size=size, mode="bilinear", align_corners=False)
    scale = flow.new_tensor([size[1] / w, size[0] / h]).view(1, 2, 1, 1)
    return out * scale


def warp(prev: torch.Tensor, flow: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Sample ``prev`` [B, C, H, W] at ``x + flow(x)``: brings the previous frame onto the current frame's grid.

    ``flow`` is [B, 2, H', W'] on the current frame's grid pointing into the previous frame; it is resized to
    ``prev``'s resolution first. Pixels sampled outside the image read zeros.
    """
    b, _, h, w = prev.shape
    flow = resize_flow(flow.to(prev.dtype), (h, w))
    ys, xs = torch.meshgrid(
        torch.arange(h, device=prev.device, dtype=prev.dtype),
        torch.arange(w, device=prev.device, dtype=prev.dtype),
        indexing="ij",
    )
    x = xs.unsqueeze(0) + flow[:, 0]
    y = ys.unsqueeze(0) + flow[:, 1]
    # align_corners=True maps -1 and 1 to the centres of the first and last pixels: pixel i <-> 2i/(n-1) - 1.
    grid = torch.stack((2.0 * x / max(w - 1, 1) - 1.0, 2.0 * y / max(h - 1, 1) - 1.0), dim=-1)
    return F.grid_sample(prev, grid, mode=mode, padding_mode="zeros", align_corners=True)


def compose(flow_ab: torch.Tensor, flow_bc: torch.Tensor) -> torch.Tensor:
    """The flow from frame a into frame c, from a->b (on a's grid) and b->c (on b's grid), [B, 2, H, W] each:
    ``f_ac(x) = f_ab(x) + f_bc(x + f_ab(x))``. Where the path leaves frame b the second term reads 0."""
    return flow_ab + warp(flow_bc, flow_ab)
