"""Rare class sampling (RCS; DAFormer, Hoyer et al. CVPR 2022), an option of any method (``dataset.rcs``).

Source clips are drawn more often the rarer their current frame's classes are: with f_c the share of all
labelled source pixels that belong to class c, a class is drawn with P(c) = exp((1 - f_c) / T) / sum_c'
exp((1 - f_c') / T), then a clip uniformly among those whose current frame holds at least ``min_pixels``
pixels of it (docs/method.md, Rare class sampling (option)).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dastc.data.class_index import ClassIndex
from dastc.errors import DataFileError

# The RNG stream of RCS draws; PairedClips' source and target permutations are 0 and 1, rare-class pasting 2.
STREAM = 3


def class_probabilities(
    pixels: Sequence[int] | np.ndarray,
    temperature: float,
    drawable: Sequence[bool] | np.ndarray | None = None,
) -> np.ndarray:
    """P(c) of RCS for per-class pixel totals ``pixels``: the softmax of (1 - f_c) / ``temperature`` over the
    classes with pixels (and, where ``drawable`` is given, a clip to draw), f_c each class's share of all the
    pixels; the other classes get 0."""
    pixels = np.asarray(pixels, dtype=np.float64)
    candidates = pixels > 0
    if drawable is not None:
        candidates &= np.asarray(drawable, dtype=bool)
    if not candidates.any():
        raise DataFileError(
            "rare class sampling (dataset.rcs) has no class to draw: no source clip's current frame holds "
            "enough labelled pixels of any class (lower dataset.rcs.min_pixels or set dataset.rcs.enabled=false)"
        )
    logits = (1 - pixels / pixels.sum()) / temperature
    logits = np.where(candidates, logits - logits[candidates].max(), -np.inf)  # shifted: exp never overflows
    weights = np.exp(logits)
    return weights / weights.sum()


class RareClassSampling:
    """The source clip of training sample ``g``: a class drawn from :func:`class_probabilities`, then a clip
    among those holding at least ``min_pixels`` pixels of it, from an RNG seeded by ``(seed, STREAM, g)``, so
    that any sample is rebuilt from its index alone (loader workers, DDP ranks, resumed runs). Classes that no
    clip holds with ``min_pixels`` pixels cannot be drawn and get no probability (DAFormer stops instead); their
    pixels still count in the frequencies of the others."""

    def __init__(self, index: ClassIndex, temperature: float, min_pixels: int, seed: int = 0):
        self.seed, self.temperature, self.min_pixels = seed, temperature, min_pixels
        classes = sorted(index.clips)
        self.clips = [index.holding(c, min_pixels) for c in classes]
        self.probabilities = class_probabilities(
            index.totals(), temperature, drawable=[bool(clips) for clips in self.clips]
        )

    def __call__(self, g: int) -> int:
        rng = np.random.default_rng([self.seed, STREAM, g])
        c = rng.choice(len(self.probabilities), p=self.probabilities)
        return int(self.clips[c][rng.integers(len(self.clips[c]))])

    def summary(self, class_names: Sequence[str]) -> str:
        """One line of each drawable class's probability, most likely first, for the run's log."""
        order = np.argsort(-self.probabilities, kind="stable")
        shown = [f"{class_names[c]} {self.probabilities[c]:.3g}" for c in order if self.probabilities[c] > 0]
        return (
            f"Rare class sampling (T={self.temperature:g}, min_pixels={self.min_pixels}), P(class): "
            + ", ".join(shown)
        )
