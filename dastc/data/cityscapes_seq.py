"""Cityscapes-Seq, the target of both video benchmarks (method.md sections 2 and 7).

    <root>/leftImg8bit_sequence/<split>/<city>/<city>_<seq:06d>_<frame:06d>_leftImg8bit.png   30-frame snippets
    <root>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png                    annotated frames

Label ids are decoded into the benchmark's class space (12 classes for ``synthia``, 15 for ``viper``).
Flow files: dastc's ``<flow_dir>/<split>/<city>/<city>_<seq>_<t:06d>_<s:06d>.png`` or the authors'
``<flow_dir>/<city>_<seq>_<t:06d>_<s:06d>_int16_x10.npy``, both the flow of frame t towards frame s = t-1.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from dastc.data.class_spaces import ClassSpace, apply_lookup
from dastc.data.class_spaces import space as class_space
from dastc.data.image_io import _imread, read_rgb
from dastc.data.real_clips import (
    ClipFiles,
    FlowFile,
    RealClips,
    flow_command,
    list_dir,
    missing_dataset,
    resize_image,
    resize_label,
)
from dastc.errors import DataFileError, DatasetNotFoundError

SNIPPET_LENGTH = 30
ANNOTATED_INDEX = 19  # the 20th frame of each 30-frame snippet is the annotated one (method.md section 2)
DEFAULT_NUM_FRAMES = {"train": 3, "val": 2}  # t-2, t-1, t for training; t-1, t for validation
RAW_LABEL_IDS = 34  # *_gtFine_labelIds.png hold Cityscapes label ids 0 (unlabeled) .. 33 (bicycle)

_FRAME = re.compile(r"^(?P<city>.+)_(?P<seq>\d{6})_(?P<frame>\d{6})_leftImg8bit\.png$")
_LABEL = re.compile(r"^(?P<city>.+)_(?P<seq>\d{6})_(?P<frame>\d{6})_gtFine_labelIds\.png$")

Snippets = dict[tuple[str, str], set[int]]  # (city, sequence) -> frame numbers


class CityscapesSeq(RealClips):
    """Clips of ``num_frames`` consecutive Cityscapes-Seq frames ending on an annotated frame t.

    Frames are resized to ``size`` (height, width; default 512x1024, the 1024x512 input of method.md s.7);
    ``flow`` is [T-1, 2, *size] with ``flow[i]`` on frame i+1's grid pointing into frame i.
    When ``labelled`` (default: the val split), ``labels`` is long [T, h, w] holding **the current frame's label
    only** (earlier frames are all 255), and it is kept at the label file's **full resolution**: [T, 1024, 2048]
    while frames are [T, 3, 512, 1024], because evaluation upsamples the logits to the label (method.md s.7).
    Pass ``label_size`` (height, width) to resize labels with nearest neighbour instead. Unlabelled clips (target
    training) carry no ``labels``.

    Samples: one per annotated frame, found from the gtFine label names; for an unlabelled reader without
    gtFine they are derived from the sequence files (see :func:`annotated_frames_from_sequences`).
    """

    dataset_name = "cityscapes_seq"
    raw_label_ids = RAW_LABEL_IDS

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        space: str | ClassSpace = "synthia",
        num_frames: int | None = None,
        flow_dir: str | os.PathLike | None = None,
        size: tuple[int, int] | None = (512, 1024),
        labelled: bool | None = None,
        label_size: tuple[int, int] | None = None,
        require_flow: bool = True,
        ignore_index: int = 255,
    ):
        if split not in DEFAULT_NUM_FRAMES:
            raise ValueError(f"unknown Cityscapes-Seq split {split!r}; known: train, val")
        self.class_space = class_space(space)
        super().__init__(
            flow_dir, require_flow, flow_command(self.class_space.name, split), ignore_index, split
        )
        self.root = Path(root)
        self.num_frames = num_frames if num_frames is not None else DEFAULT_NUM_FRAMES[split]
        if self.num_frames < 1:
            raise ValueError("num_frames must be at least 1")
        self.size = tuple(size) if size is not None else None
        self.label_size = tuple(label_size) if label_size is not None else None
        self.labelled = split == "val" if labelled is None else labelled
        self.num_classes = self.class_space.num_classes

        frames_dir = self.root / "leftImg8bit_sequence" / split
        labels_dir = self.root / "gtFine" / split
        if not frames_dir.is_dir():
            raise missing_dataset(
                "Cityscapes-Seq",
                self.root,
                "download leftImg8bit_sequence_trainvaltest.zip and gtFine_trainvaltest.zip from "
                "https://www.cityscapes-dataset.com",
                frames_dir / "<city>" / "<city>_<seq>_<frame>_leftImg8bit.png",
            )
        frames = _scan(frames_dir, _FRAME)
        if labels_dir.is_dir():
            annotated = _scan(labels_dir, _LABEL)
        elif self.labelled:
            raise DatasetNotFoundError(
                f"Cityscapes-Seq labels are not at {labels_dir}: download gtFine_trainvaltest.zip from "
                f"https://www.cityscapes-dataset.com and unpack it into {self.root}"
            )
        else:
            annotated = annotated_frames_from_sequences(frames)
        for (city, seq), ts in sorted(annotated.items()):
            present = frames.get((city, seq), set())
            for t in sorted(ts):
                ids = list(range(t - self.num_frames + 1, t + 1))
                missing = [i for i in ids if i not in present]
                if missing:
                    names = (f"{city}_{seq}_{i:06d}_leftImg8bit.png" for i in missing)
                    self._note_missing(frames_dir / city / name for name in names)
                else:
                    self.samples.append(self._clip_files(city, seq, ids, frames_dir, labels_dir))
        self._check_samples(frames_dir, self.num_frames)

    def _clip_files(
        self, city: str, seq: str, ids: list[int], frames_dir: Path, labels_dir: Path
    ) -> ClipFiles:
        stem = f"{city}_{seq}"
        frames = tuple(frames_dir / city / f"{stem}_{i:06d}_leftImg8bit.png" for i in ids)
        flows = ()
        if self.flow_dir is not None:
            flows = tuple(
                FlowFile(
                    current=frames[k + 1],
                    previous=frames[k],
                    ours=self.flow_dir / self.split / city / f"{stem}_{ids[k + 1]:06d}_{ids[k]:06d}.png",
                    published=self.flow_dir / f"{stem}_{ids[k + 1]:06d}_{ids[k]:06d}_int16_x10.npy",
                )
                for k in range(len(ids) - 1)
            )
        # Only the current (annotated) frame has a label; the others are left to ignore.
        label = labels_dir / city / f"{stem}_{ids[-1]:06d}_gtFine_labelIds.png"
        return ClipFiles(
            sequence=stem,
            frame_ids=tuple(ids),
            frames=frames,
            labels=(None,) * (len(ids) - 1) + (label if self.labelled else None,),
            flows=flows,
        )

    def read_frame(self, path: Path) -> np.ndarray:
        return resize_image(read_rgb(path), self.size)

    def read_raw_label(self, path: Path) -> np.ndarray:
        raw = _imread(path, cv2.IMREAD_UNCHANGED, "label")
        if raw.ndim != 2:
            raise DataFileError(f"label {path} should be a one-channel labelIds PNG, got shape {raw.shape}")
        return raw

    def decode_label(self, raw: np.ndarray, path: Path) -> np.ndarray:
        return resize_label(apply_lookup(self.class_space.cityscapes_lut, raw), self.label_size)

    def label_shape(self, frame_shape: tuple[int, int]) -> tuple[int, int] | None:
        # Labels are not tied to the (resized) frames: full resolution unless label_size says otherwise.
        return self.label_size


def annotated_frames_from_sequences(frames: Snippets) -> Snippets:
    """Annotated frame numbers derived from the sequence files alone (when gtFine is absent).

    Each snippet is 30 frames with the annotated one at index 19 (frames -19..+10 around it). Where frame
    numbers restart with each snippet (aachen_000000_000019) that is ``frame % 30 == 19``; where they run on
    within a sequence (bochum_000000_000313, frankfurt_000000_000294) it is not, so each contiguous run of
    frame numbers is taken as a chain of snippets and counted from its first frame. A copy with truncated
    snippets needs gtFine to find its annotated frames.
    """
    annotated: Snippets = {}
    for key, numbers in frames.items():
        found = set()
        for start, end in _runs(sorted(numbers)):
            found.update(range(start + ANNOTATED_INDEX, end + 1, SNIPPET_LENGTH))
        if found:
            annotated[key] = found
    return annotated


def _runs(numbers: list[int]) -> list[tuple[int, int]]:
    """(first, last) of each run of consecutive integers in a sorted list."""
    runs: list[tuple[int, int]] = []
    for n in numbers:
        if runs and n == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], n)
        else:
            runs.append((n, n))
    return runs


def _scan(split_dir: Path, pattern: re.Pattern) -> Snippets:
    """(city, sequence) -> frame numbers of the files in ``<split_dir>/<city>/`` whose names match ``pattern``."""
    found: Snippets = defaultdict(set)
    for city_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        for name in list_dir(city_dir):
            match = pattern.match(name)
            if match and match["city"] == city_dir.name:
                found[(match["city"], match["seq"])].add(int(match["frame"]))
    return dict(found)
