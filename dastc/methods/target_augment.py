"""TPS's augmentation of the student's target pair (TPS, ECCV 2022, and its released training loop): strong
photometric changes and a random rescale. Everything runs on the frames' device and draws from the global torch
RNG, so checkpoints (which store its state) make resumed runs draw the same values."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF


def _uniform(low: float, high: float) -> float:
    # The global CPU stream whatever the default device: the one checkpoints store.
    return low + (high - low) * float(torch.rand((), device="cpu"))


def _chance(p: float) -> bool:
    return _uniform(0.0, 1.0) < p


def _choice(options: Sequence):
    return options[int(torch.randint(len(options), (), device="cpu"))]


def gaussian_kernel(sigma: float, device=None, dtype=torch.float32) -> torch.Tensor:
    """A normalised 1-D Gaussian of standard deviation ``sigma``, cut at 3 sigma (2 ceil(3 sigma) + 1 taps)."""
    radius = math.ceil(3 * sigma)
    x = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    return (kernel / kernel.sum()).to(dtype)


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of standard deviation ``sigma`` pixels of [..., C, H, W] images: PIL's
    ``ImageFilter.GaussianBlur(radius=sigma)``, which TPS applies. Separable (two 1-D passes); edges padded by
    replication, as PIL's box blurs extend the edge pixels (reflection needs images wider than 3 sigma)."""
    shape = images.shape
    x = images.reshape(-1, 1, *shape[-2:])
    kernel = gaussian_kernel(sigma, images.device, images.dtype)
    radius = kernel.numel() // 2
    # In the images' own precision: under bf16 autocast the convolutions would round every pixel.
    with torch.autocast(images.device.type, enabled=False):
        x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
        x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))
    return x.reshape(shape)


def color_jitter(
    images: torch.Tensor, brightness: float, contrast: float, saturation: float, hue: float
) -> torch.Tensor:
    """torchvision's ColorJitter: each factor drawn from [1 - x, 1 + x] (hue: [-x, x]), applied in a random
    order."""
    ops = [
        lambda x: TF.adjust_brightness(x, _uniform(max(0.0, 1 - brightness), 1 + brightness)),
        lambda x: TF.adjust_contrast(x, _uniform(max(0.0, 1 - contrast), 1 + contrast)),
        lambda x: TF.adjust_saturation(x, _uniform(max(0.0, 1 - saturation), 1 + saturation)),
        lambda x: TF.adjust_hue(x, _uniform(-hue, hue)),
    ]
    for i in torch.randperm(len(ops), device="cpu").tolist():
        images = ops[i](images)
    return images


class StrongPhotometric:
    """TPS's strong augmentation of raw RGB in [0, 1]: Gaussian blur (sigma drawn from ``blur_sigmas``, p
    ``blur_p``), colour jitter (brightness, contrast, saturation, hue = ``jitter``; p ``jitter_p``), grayscale
    (p ``gray_p``). Called on one clip's frames [T, 3, H, W], it draws its parameters once, so every frame of
    the clip gets the same augmentation."""

    def __init__(
        self,
        blur_p: float = 0.6,
        blur_sigmas: Sequence[float] = (5, 7, 9),
        jitter_p: float = 0.8,
        jitter: Sequence[float] = (0.8, 0.8, 0.8, 0.2),
        gray_p: float = 0.2,
    ):
        self.blur_p, self.blur_sigmas = blur_p, [float(s) for s in blur_sigmas]
        self.jitter_p, self.jitter = jitter_p, [float(j) for j in jitter]
        self.gray_p = gray_p

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        if _chance(self.blur_p):
            clip = gaussian_blur(clip, _choice(self.blur_sigmas))
        if _chance(self.jitter_p):
            clip = color_jitter(clip, *self.jitter)
        if _chance(self.gray_p):
            clip = TF.rgb_to_grayscale(clip, num_output_channels=3)
        return clip

    def __repr__(self) -> str:
        return (
            f"StrongPhotometric(blur_p={self.blur_p}, blur_sigmas={self.blur_sigmas}, jitter_p={self.jitter_p}, "
            f"jitter={self.jitter}, gray_p={self.gray_p})"
        )


def draw_scale(low: float, high: float) -> float:
    """TPS's rescale ratio: ``randint(100 low, 100 high) / 100``, i.e. 0.80, 0.81, ..., 1.19 for (0.8, 1.2)."""
    return int(torch.randint(round(100 * low), round(100 * high), (), device="cpu")) / 100


def scaled_size(height: int, width: int, ratio: float, multiple: int = 8) -> tuple[int, int]:
    """``(height, width) x ratio`` rounded to multiples of ``multiple`` as TPS does (Python's round)."""
    return round(height * ratio / multiple) * multiple, round(width * ratio / multiple) * multiple


def rescale_clips(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Every frame of [B, T, 3, H, W] clips resized to ``size`` (bilinear, align_corners=True as TPS)."""
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    flat = F.interpolate(frames.flatten(0, 1), size=size, mode="bilinear", align_corners=True)
    return flat.unflatten(0, frames.shape[:2])


def random_rescale(frames: torch.Tensor, scale_range: Sequence[float], multiple: int = 8) -> torch.Tensor:
    """TPS's rescale of the student's target clips [B, T, 3, H, W]: one ratio from ``draw_scale`` for the
    batch, the same for every frame."""
    size = scaled_size(*frames.shape[-2:], draw_scale(*scale_range), multiple)
    return rescale_clips(frames, size)
