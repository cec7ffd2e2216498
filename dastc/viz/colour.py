"""Colour maps and overlays for segmentation masks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dastc.data.class_spaces import CITYSCAPES_COLOURS


def palette_for(class_names: Sequence[str]) -> np.ndarray:
    """uint8 [256, 3]: the Cityscapes colour of each named class (the benchmarks' palettes), a fixed distinct
    colour for names Cityscapes lacks, black for ignore (255) and unused ids."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    rng = np.random.default_rng(0)  # fixed: a class keeps its colour across runs
    for i, name in enumerate(class_names):
        colour = CITYSCAPES_COLOURS.get(name)
        palette[i] = colour if colour is not None else rng.integers(32, 256, 3)
    return palette


def colourise(mask: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """H x W class ids -> H x W x 3 RGB."""
    return palette[mask.astype(np.uint8)]


def overlay(image: np.ndarray, mask: np.ndarray, palette: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The colourised mask blended over an H x W x 3 uint8 RGB image with weight ``alpha``."""
    blend = (1.0 - alpha) * image.astype(np.float32) + alpha * colourise(mask, palette).astype(np.float32)
    return blend.round().clip(0, 255).astype(np.uint8)
