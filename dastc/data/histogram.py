"""Source-to-target histogram matching (docs/method.md, TPS (stage 1)): both reference codes match each source
frame's colour histogram to the target's current frame before normalising; an option, on in the paper presets
(docs/decisions.md, Histogram matching as an option)."""

from __future__ import annotations

import numpy as np
import torch
from skimage.exposure import match_histograms


def match_clip_histograms(frames: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Every frame of ``frames`` [T, 3, H, W] (RGB in [0, 1]) with each channel's histogram matched to that of
    ``reference`` [3, h, w] (any size), at 8-bit precision like the images on disk. scikit-image compares the
    two histograms as they are; albumentations' HistogramMatching would first resize the reference to the
    frame's size, and interpolation adds grey levels the target frame does not have."""
    ref = _to_uint8(reference)
    matched = [match_histograms(_to_uint8(frame), ref, channel_axis=-1) for frame in frames]
    return torch.from_numpy(np.stack(matched)).permute(0, 3, 1, 2).float().div_(255.0)


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    return image.permute(1, 2, 0).mul(255.0).round_().clamp_(0, 255).to(torch.uint8).numpy()
