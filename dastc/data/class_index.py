"""The class index of a source dataset: which clips' current frames hold each class, and how many pixels.

DA-STC's rare-class pasting (docs/method.md, Rare-class pasting) pastes long-tail classes from random source
frames that contain them; rare class sampling (docs/method.md, Rare class sampling (option)) draws source clips
by their classes' pixel frequency. This index serves both. It is built once (``python -m dastc.data.index
dataset=...``, or on first use by the DataModule) and cached as JSON beside the data, keyed by the dataset's
clip count and first/last label so that a changed copy of the dataset rebuilds it, and by a format number so
that a cache written by an older version (format 1: clip lists without pixel counts) is rebuilt too.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress
from torch.utils.data import Dataset

from dastc.errors import DataFileError
from dastc.files import write_json_atomic

# 2: per-clip pixel counts beside each class's clip list (1, unnumbered: the clip lists alone).
FORMAT = 2


@dataclass
class ClassIndex:
    """``clips[c]``: the clips (ascending) whose current frame holds class ``c``; ``pixels[c]``: how many pixels
    of ``c`` each of those frames holds, in the same order. Every class of the space has an entry."""

    clips: dict[int, list[int]]
    pixels: dict[int, list[int]]

    def holding(self, c: int, min_pixels: int = 1) -> list[int]:
        """The clips whose current frame holds at least ``min_pixels`` pixels of class ``c``."""
        return [i for i, n in zip(self.clips[c], self.pixels[c], strict=True) if n >= min_pixels]

    def totals(self) -> np.ndarray:
        """Pixels of each class over the whole dataset (current frames), int64 [num_classes]."""
        return np.array([sum(self.pixels[c]) for c in sorted(self.clips)], dtype=np.int64)


def current_label(dataset: Dataset, index: int) -> np.ndarray:
    """The current frame's label of clip ``index``; datasets may offer a cheaper ``current_label`` of their own
    (reading the label file alone, not the frames and flow)."""
    if hasattr(dataset, "current_label"):
        return np.asarray(dataset.current_label(index))
    clip = dataset[index]
    if "labels" not in clip:
        raise DataFileError(f"{type(dataset).__name__} clips carry no labels: a class index needs labels")
    return clip["labels"][-1].numpy()


def fingerprint(dataset: Dataset) -> dict:
    """What identifies the dataset the index was built for: its type, clip count and a digest of the first and
    last clips' labels (a regenerated or replaced copy changes it)."""
    digest = hashlib.sha1()
    for i in sorted({0, len(dataset) - 1}) if len(dataset) else ():
        digest.update(np.ascontiguousarray(current_label(dataset, i)).tobytes())
    return {"type": type(dataset).__name__, "clips": len(dataset), "labels": digest.hexdigest()}


def build_class_index(
    dataset: Dataset, num_classes: int, ignore_index: int = 255, progress: bool = True
) -> ClassIndex:
    """The clips holding each class and their pixel counts, over the whole dataset."""
    index = ClassIndex({c: [] for c in range(num_classes)}, {c: [] for c in range(num_classes)})
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("indexing source classes", total=len(dataset))
        for i in range(len(dataset)):
            label = current_label(dataset, i)
            valid = label[(label >= 0) & (label < num_classes) & (label != ignore_index)]
            counts = np.bincount(valid.astype(np.int64).ravel(), minlength=num_classes)
            for c in np.flatnonzero(counts):
                index.clips[int(c)].append(i)
                index.pixels[int(c)].append(int(counts[c]))
            bar.advance(task)
    return index


def load_or_build_class_index(
    dataset: Dataset,
    path: str | os.PathLike,
    num_classes: int,
    ignore_index: int = 255,
    progress: bool = True,
) -> ClassIndex:
    """The cached index at ``path`` when it was built for this dataset in this format, else a new one written
    there."""
    path = Path(path)
    identity = fingerprint(dataset)
    if path.is_file():
        try:
            stored = json.loads(path.read_text())
        except json.JSONDecodeError:
            stored = {}  # a damaged cache is rebuilt, not trusted
        if (
            stored.get("format") == FORMAT
            and stored.get("fingerprint") == identity
            and stored.get("num_classes") == num_classes
        ):
            return ClassIndex(
                {int(c): clips for c, clips in stored["classes"].items()},
                {int(c): counts for c, counts in stored["pixels"].items()},
            )
    index = build_class_index(dataset, num_classes, ignore_index, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Atomic: a killed run never leaves half an index.
    write_json_atomic(
        path,
        {
            "format": FORMAT,
            "fingerprint": identity,
            "num_classes": num_classes,
            "classes": index.clips,
            "pixels": index.pixels,
        },
    )
    return index


class RareClassClips(Dataset):
    """For sample ``g``, ``count`` source clips each holding one long-tail class, as
    ``{"classes": long [count], "clips": [clip, ...]}``: the classes are drawn without replacement from the
    long-tail classes that the index holds (with replacement when fewer than ``count`` are available) and each
    clip at random among those containing its class, from an RNG seeded by ``(seed, g)``, so any sample is
    rebuilt from its index alone."""

    def __init__(
        self,
        dataset: Dataset,
        index: dict[int, list[int]],
        long_tail: Sequence[int],
        count: int,
        seed: int = 0,
    ):
        self.dataset, self.count, self.seed = dataset, count, seed
        self.index = {c: index.get(c, []) for c in long_tail if index.get(c)}
        if count > 0 and not self.index:
            raise DataFileError(
                f"no source clip holds any of the long-tail classes {list(long_tail)}: rare-class pasting has "
                "nothing to paste (set method.fusion.rare_class_paste=false)"
            )

    def __getitem__(self, g: int) -> dict:
        rng = np.random.default_rng([self.seed, 2, g])
        available = sorted(self.index)
        replace = len(available) < self.count
        classes = rng.choice(available, size=self.count, replace=replace)
        clips = [self.dataset[int(rng.choice(self.index[int(c)]))] for c in classes]
        return {"classes": torch.as_tensor(classes, dtype=torch.long), "clips": clips}
