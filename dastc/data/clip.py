"""The clip contract shared by every dataset, and its batch collation.

A clip is a dict:
- ``frames``: float [T, 3, H, W], RGB in [0, 1], oldest first; ``frames[-1]`` is the current frame. The network
  normalises its own input (the statistics belong to its weights), so raw pixels stay available for
  photometric augmentation and mixing.
- ``labels``: long [T, H, W] train ids, ``ignore_index`` (255) where unlabelled; absent on target training clips.
- ``flow``: float [T-1, 2, H, W]; ``flow[i]`` lies on frame i+1's grid and points into frame i (dastc.flow).
- ``meta``: dict with the dataset, sequence, frame ids and file paths.
Batches stack the tensors to [B, T, ...] and keep ``meta`` as a list of per-clip dicts.
"""

from __future__ import annotations

from pathlib import Path

import torch

from dastc.errors import DataFileError

TENSOR_KEYS = ("frames", "labels", "flow")


def check_size(shape: tuple[int, ...], expected: tuple[int, int], path: str | Path, what: str) -> None:
    """Raise a DataFileError naming ``path`` when a label or flow does not match its frame's size."""
    if tuple(shape[:2]) != tuple(expected):
        raise DataFileError(
            f"{what} {path} is {shape[1]}x{shape[0]} but its frame is {expected[1]}x{expected[0]}"
        )


def collate_clips(clips: list[dict]) -> dict:
    """Stack a list of clips into a batch: tensors to [B, T, ...], ``meta`` to a list."""
    batch: dict = {"meta": [clip["meta"] for clip in clips]}
    for key in TENSOR_KEYS:
        present = [key in clip for clip in clips]
        if any(present) and not all(present):
            raise ValueError(f"some clips of the batch have '{key}' and others do not")
        if all(present):
            batch[key] = torch.stack([clip[key] for clip in clips])
    return batch
