"""Cityscapes-Seq, the target of both video benchmarks (docs/benchmarks.md, Cityscapes-Seq).

    <root>/leftImg8bit_sequence/<split>/<city>/<city>_<seq:06d>_<frame:06d>_leftImg8bit.png   30-frame snippets
    <root>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png                    annotated frames

Which frames are annotated (the clips' current frames t) is told either by their position in the snippets,
each snippet's 20th frame (the default for an unlabelled reader, which never reads gtFine: target training),
or by the gtFine label names (the default for a labelled one: validation). ``root`` is a folder or an ordered
list of them, the first holding ``leftImg8bit_sequence/<split>`` being read.
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
    Root,
    find_root,
    flow_command,
    list_dir,
    missing_dataset,
    resize_image,
    resize_label,
)
from dastc.errors import DataFileError, DatasetNotFoundError

SNIPPET_LENGTH = 30
ANNOTATED_INDEX = 19  # the 20th of each 30-frame snippet is annotated (docs/benchmarks.md, Cityscapes-Seq)
ANNOTATED_FROM = ("positions", "labels")  # how annotated frames are found (CityscapesSeq's annotated_from)
DEFAULT_NUM_FRAMES = {"train": 3, "val": 2}  # t-2, t-1, t for training; t-1, t for validation
RAW_LABEL_IDS = 34  # *_gtFine_labelIds.png hold Cityscapes label ids 0 (unlabeled) .. 33 (bicycle)

_FRAME = re.compile(r"^(?P<city>.+)_(?P<seq>\d{6})_(?P<frame>\d{6})_leftImg8bit\.png$")
_LABEL = re.compile(r"^(?P<city>.+)_(?P<seq>\d{6})_(?P<frame>\d{6})_gtFine_labelIds\.png$")

Snippets = dict[tuple[str, str], set[int]]  # (city, sequence) -> frame numbers


class CityscapesSeq(RealClips):
    """Clips of ``num_frames`` consecutive Cityscapes-Seq frames ending on an annotated frame t.

    Frames are resized to ``size`` (height, width; default 512x1024, the 1024x512 input of docs/benchmarks.md,
    Evaluation protocol); ``flow`` is [T-1, 2, *size] with ``flow[i]`` on frame i+1's grid pointing into frame
    i. When ``labelled`` (default: the val split), ``labels`` is long [T, h, w] holding **the current frame's
    label only** (earlier frames are all 255), and it is kept at the label file's **full resolution**: [T,
    1024, 2048] while frames are [T, 3, 512, 1024], because evaluation upsamples the logits to the label
    (docs/benchmarks.md, Evaluation protocol). Pass ``label_size`` (height, width) to resize labels with
    nearest neighbour instead. Unlabelled clips (target training) carry no ``labels``.

    Samples: one per annotated frame whose clip frames are all present. ``annotated_from`` says how annotated
    frames are found: ``"positions"`` (each 30-frame snippet's 20th frame, see
    :func:`annotated_frames_from_sequences`; the default when ``labelled`` is False, so target training needs
    no gtFine) or ``"labels"`` (the gtFine label names; the default when ``labelled``, and the way to index a
    copy trimmed to the clips' own frames).
    """

    dataset_name = "cityscapes_seq"
    raw_label_ids = RAW_LABEL_IDS

    def __init__(
        self,
        root: Root,
        split: str = "train",
        space: str | ClassSpace = "synthia",
        num_frames: int | None = None,
        flow_dir: str | os.PathLike | None = None,
        size: tuple[int, int] | None = (512, 1024),
        labelled: bool | None = None,
        label_size: tuple[int, int] | None = None,
        require_flow: bool = True,
        ignore_index: int = 255,
        annotated_from: str | None = None,
    ):
        if split not in DEFAULT_NUM_FRAMES:
            raise ValueError(f"unknown Cityscapes-Seq split {split!r}; known: train, val")
        if annotated_from not in (None, *ANNOTATED_FROM):
            raise ValueError(
                f"annotated_from must be one of {', '.join(ANNOTATED_FROM)}, got {annotated_from!r}"
            )
        self.class_space = class_space(space)
        super().__init__(
            flow_dir, require_flow, flow_command(self.class_space.name, split), ignore_index, split
        )
        self.root = find_root(
            root, lambda p: (p / "leftImg8bit_sequence" / split).is_dir(), lambda c: _missing(c, split)
        )
        self.num_frames = num_frames if num_frames is not None else DEFAULT_NUM_FRAMES[split]
        if self.num_frames < 1:
            raise ValueError("num_frames must be at least 1")
        self.size = tuple(size) if size is not None else None
        self.label_size = tuple(label_size) if label_size is not None else None
        self.labelled = split == "val" if labelled is None else labelled
        self.annotated_from = annotated_from or ("labels" if self.labelled else "positions")
        self.num_classes = self.class_space.num_classes

        frames_dir = self.root / "leftImg8bit_sequence" / split
        labels_dir = self.root / "gtFine" / split
        if (self.labelled or self.annotated_from == "labels") and not labels_dir.is_dir():
            raise DatasetNotFoundError(
                f"Cityscapes-Seq labels are not at {labels_dir}: download gtFine_trainvaltest.zip from "
                f"https://www.cityscapes-dataset.com and unpack it into {self.root}"
            )
        frames = _scan(frames_dir, _FRAME)
        if self.annotated_from == "labels":
            annotated = _scan(labels_dir, _LABEL)
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
        self._check_samples(frames_dir, self.num_frames, *self._looked_for(labels_dir))

    def _looked_for(self, labels_dir: Path) -> tuple[str, str]:
        """(what was looked for, what the clips end on) for the error of a copy that gives no clip."""
        before = {1: "alone", 2: "with the frame before it"}.get(
            self.num_frames, f"with the {self.num_frames - 1} frames before it"
        )
        if self.annotated_from == "labels":
            return (
                f"the frame of each {labels_dir}/<city>/*_gtFine_labelIds.png {before}",
                "with a label on the last one",
            )
        # A copy trimmed to its clips' frames has lost the snippets' positions; its label names hold them.
        trimmed = f" (a copy trimmed to its clips' frames: annotated_from=labels reads {labels_dir})"
        return (
            f"the 20th frame of each 30-frame snippet of <city>/<city>_<seq>_<frame>_leftImg8bit.png {before}"
            + (trimmed if labels_dir.is_dir() else ""),
            "ending on an annotated frame",
        )

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
    """Annotated frame numbers told by the frames' positions alone: the 20th frame (index 19) of each snippet.

    Each sequence's frames are cut into 30-frame snippets (docs/benchmarks.md): a snippet starts at the first
    frame past the previous snippet, so frame numbers that run on within a sequence (frankfurt_000000_000275
    .. 000304, annotated 000294; bochum's snippets 294..323 then 324..353) are placed right, and so is a
    partial copy whose snippets keep their first frame. A sequence whose frames all lie in 0..29 is one
    snippet numbered from 0 (aachen_000000_000000 .. 000029), whichever of them are present. An annotated
    frame whose clip frames are missing gives no clip (the reader lists them); a copy trimmed to the clips'
    own frames has lost the positions and needs ``annotated_from="labels"``.
    """
    annotated: Snippets = {}
    for key, numbers in frames.items():
        annotated[key] = {start + ANNOTATED_INDEX for start in _snippet_starts(sorted(numbers))}
    return annotated


def _snippet_starts(numbers: list[int]) -> list[int]:
    """First frame of each snippet of a sequence given its sorted frame numbers."""
    if numbers and numbers[-1] < SNIPPET_LENGTH:  # numbered per snippet: one snippet from 0
        return [0]
    starts: list[int] = []
    for n in numbers:
        if not starts or n >= starts[-1] + SNIPPET_LENGTH:
            starts.append(n)
    return starts


def _missing(candidates: list[Path], split: str) -> Exception:
    return missing_dataset(
        "Cityscapes-Seq",
        candidates,
        "download leftImg8bit_sequence_trainvaltest.zip and gtFine_trainvaltest.zip from "
        "https://www.cityscapes-dataset.com",
        candidates[0] / "leftImg8bit_sequence" / split / "<city>" / "<city>_<seq>_<frame>_leftImg8bit.png",
        f"leftImg8bit_sequence/{split}/",
    )


def _scan(split_dir: Path, pattern: re.Pattern) -> Snippets:
    """(city, sequence) -> frame numbers of the files in ``<split_dir>/<city>/`` whose names match ``pattern``."""
    found: Snippets = defaultdict(set)
    for city_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        for name in list_dir(city_dir):
            match = pattern.match(name)
            if match and match["city"] == city_dir.name:
                found[(match["city"], match["seq"])].add(int(match["frame"]))
    return dict(found)
