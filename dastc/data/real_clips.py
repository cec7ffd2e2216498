"""What the readers of the real datasets (SYNTHIA-Seq, VIPER, Cityscapes-Seq) share.

A reader lists its samples as :class:`ClipFiles` (which frame, label and flow files make one clip) and decodes
its own frames and labels; :class:`RealClips` turns the files into the clip contract of :mod:`dastc.data.clip`.

Flow orientation (docs/benchmarks.md, Optical flow; :mod:`dastc.flow`): ``flow[i]`` lies on frame i+1's pixel
grid and points into frame i, so ``frame_i_warped(x) = frame_i(x + flow[i](x))``. Each flow is looked up in
two formats, dastc's own 16-bit PNG (written by ``python -m dastc.flow.estimate``) first, then the authors'
published ``*_int16_x10.npy``, and is resized to the frame with its vectors scaled by the size ratio per axis.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from dastc.data.clip import check_size
from dastc.errors import DataFileError, DatasetNotFoundError
from dastc.flow.io import read_flow_int16_x10, read_flow_png
from dastc.flow.warp import resize_flow


def flow_command(benchmark: str, split: str | None = None) -> str:
    """The command that computes the flow files a reader needs (one place, so that the CLI can change)."""
    command = f"python -m dastc.flow.estimate dataset={benchmark}"
    return f"{command} flow.split={split}" if split else command


# A reader's ``root``: one folder, or an ordered list of the folders it may be in (dastc's name first, then
# the names DA-VSN/TPS use, docs/benchmarks.md), so that a copy set up for the peers is read as it is.
Root = str | os.PathLike | Sequence[str | os.PathLike]


def candidate_roots(root: Root) -> list[Path]:
    """``root`` as the ordered list of folders to look in (one folder: a list of one)."""
    if isinstance(root, str | os.PathLike):
        return [Path(root)]
    candidates = [Path(p) for p in root]
    if not candidates:
        raise ValueError("a dataset's root must name at least one folder")
    return candidates


def find_root(
    root: Root, holds_dataset: Callable[[Path], bool], missing: Callable[[list[Path]], Exception]
) -> Path:
    """The first of ``root``'s candidate folders that ``holds_dataset``; else raise ``missing(candidates)``.

    A root given as one folder is the only candidate, so a user's own root that does not exist fails naming it
    rather than falling back to another copy.
    """
    candidates = candidate_roots(root)
    for candidate in candidates:
        if holds_dataset(candidate):
            return candidate
    raise missing(candidates)


def missing_dataset(
    name: str, root: Root, download: str, expected: str | Path, looked_for: str | None = None
) -> DatasetNotFoundError:
    """The one-sentence error for a dataset that is in none of the folders it was looked for in (each named;
    ``looked_for``: what was looked for inside them)."""
    where = " nor at ".join(str(p) for p in candidate_roots(root))
    inside = f" (no {looked_for} there)" if looked_for else ""
    return DatasetNotFoundError(
        f"{name} is not at {where}{inside}: {download} and unpack it so that {expected} exists "
        "(or point the dataset's root at where it is)"
    )


def resize_image(image: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Resize an H x W x C image to ``size`` = (height, width): area averaging when shrinking, else bilinear."""
    if size is None or image.shape[:2] == tuple(size):
        return image
    shrinking = size[0] <= image.shape[0] and size[1] <= image.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (size[1], size[0]), interpolation=interpolation)


def resize_label(label: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Resize an H x W id map to ``size`` = (height, width) with nearest neighbour (ids must not be blended)."""
    if size is None or label.shape[:2] == tuple(size):
        return label
    return cv2.resize(label, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)


def resize_flow_array(flow: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An H x W x 2 flow resized to ``size`` like :func:`dastc.flow.warp.resize_flow` (bilinear, vectors scaled
    by the size ratio per axis), returned as size[0] x size[1] x 2 float32."""
    tensor = torch.from_numpy(np.ascontiguousarray(flow, dtype=np.float32)).permute(2, 0, 1)[None]
    return resize_flow(tensor, tuple(size))[0].permute(1, 2, 0).numpy()


def list_dir(path: Path) -> list[str]:
    """File names in ``path`` (empty when it is missing): one scandir, cheap on folders of 10^4-10^5 files."""
    try:
        with os.scandir(path) as entries:
            return sorted(e.name for e in entries if e.is_file())
    except FileNotFoundError:
        return []


@dataclass(frozen=True)
class FlowFile:
    """One flow a clip needs: on ``current``'s grid, pointing into ``previous``.

    ``ours`` is where dastc's estimator writes it (16-bit PNG); ``published`` is the authors' ``*_int16_x10.npy``.
    """

    current: Path
    previous: Path
    ours: Path
    published: Path


@dataclass(frozen=True)
class ClipFiles:
    """The files of one clip, oldest frame first; ``labels[i]`` is None where frame i has no label to read,
    ``flows[i]`` maps frame i+1 onto frame i (empty when the reader reads no flow)."""

    sequence: str
    frame_ids: tuple[int, ...]
    frames: tuple[Path, ...]
    labels: tuple[Path | None, ...]
    flows: tuple[FlowFile, ...]


class RealClips(Dataset):
    """Base of the real-dataset readers: builds clips from ``self.samples`` (a list of :class:`ClipFiles`).

    Subclasses set ``samples`` and implement :meth:`read_frame` and :meth:`read_label`. Clips hold ``frames``
    float [T, 3, H, W] RGB in [0, 1] oldest first; ``labels`` long [T, h, w] train ids, ``ignore_index`` on
    frames without a label (absent when the reader is unlabelled); ``flow`` float [T-1, 2, H, W] in pixels of
    the frames' grid, ``flow[i]`` on frame i+1 pointing into frame i (absent when ``flow_dir`` is None and
    ``require_flow`` is False); and ``meta`` (dataset, split, sequence, frame_ids, paths, label_path).
    """

    dataset_name: str = ""
    uses_flow: bool = True  # False for the image readers: single images, nothing to estimate
    # Label files hold raw class ids below this number; anything above means the file is not in the dataset's
    # encoding (a wrong channel, a colour-coded image), which `python -m dastc.data.verify` reports.
    raw_label_ids: int = 256

    def __init__(
        self,
        flow_dir: str | os.PathLike | None,
        require_flow: bool,
        flow_command: str,
        ignore_index: int = 255,
        split: str = "train",
    ):
        self.flow_dir = Path(flow_dir) if flow_dir is not None else None
        self.flow_command = flow_command
        self.ignore_index = ignore_index
        self.split = split
        self.labelled = True
        self.samples: list[ClipFiles] = []
        self._missing_frames: dict[Path, None] = {}  # ordered and unique
        if self.flow_dir is None and require_flow:
            raise DataFileError(
                f"{self.dataset_name} clips need optical flow: set flow_dir to the folder of its flow files "
                f"(compute them with `{flow_command}`), or require_flow=False for clips without flow"
            )

    # -- hooks -------------------------------------------------------------------------------------------
    def read_frame(self, path: Path) -> np.ndarray:
        """A frame as H x W x 3 uint8 RGB at the clip's resolution."""
        raise NotImplementedError

    def read_raw_label(self, path: Path) -> np.ndarray:
        """The raw class ids of a label file (the dataset's own ids, below ``raw_label_ids``), H x W, as stored."""
        raise NotImplementedError

    def decode_label(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """Raw ids -> train ids at the clip's label resolution, H x W uint8 (255 = ignore)."""
        raise NotImplementedError

    def read_label(self, path: Path) -> np.ndarray:
        """A label decoded to train ids, H x W uint8 (255 = ignore)."""
        return self.decode_label(self.read_raw_label(path), path)

    def flow_on_frame_grid(self, flow: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """Bring a flow read from disk onto the frames' field of view (before resizing); default: as it is."""
        return flow

    def label_shape(self, frame_shape: tuple[int, int]) -> tuple[int, int] | None:
        """The size labels must have given the frames' size; None: not tied to the frames (checked elsewhere)."""
        return frame_shape

    # -- clip assembly -----------------------------------------------------------------------------------
    @property
    def missing_frames(self) -> list[Path]:
        """Frames that labelled frames need (t-1, ...) but that are absent, each once: those labelled frames give
        no sample. A partial copy is read as it is; `python -m dastc.data.verify` lists these."""
        return list(self._missing_frames)

    def _note_missing(self, paths) -> None:
        self._missing_frames.update(dict.fromkeys(paths))

    def _check_samples(
        self, root: Path, num_frames: int, looked_for: str = "", last: str = "with a label on the last one"
    ) -> None:
        """No sample at all: an error saying what was looked for and, where clips lacked frames, the first."""
        if self.samples:
            return
        missing = self.missing_frames
        looked = f": looked for {looked_for}" if looked_for else ""
        frames = "1 frame" if len(missing) == 1 else f"{len(missing)} frames"
        absent = f"; {frames} of such clips missing, the first {missing[0]}" if missing else ""
        clips = f"no clip of {num_frames} consecutive frames {last}"
        raise DatasetNotFoundError(f"{self.dataset_name} at {root} holds {clips}{looked}{absent}")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        files = self.samples[index]
        images = [self.read_frame(p) for p in files.frames]
        size = images[-1].shape[:2]
        for path, image in zip(files.frames, images, strict=True):
            check_size(image.shape, size, path, "frame")
        clip = {
            "frames": torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0),
            "meta": {
                "dataset": self.dataset_name,
                "split": self.split,
                "sequence": files.sequence,
                "frame_ids": list(files.frame_ids),
                "paths": [str(p) for p in files.frames],
            },
        }
        if self.labelled:
            clip["labels"] = self._labels(files, size)
            clip["meta"]["label_path"] = str(files.labels[-1])
        if self.flow_dir is not None:
            flows = [self.read_flow(f, size) for f in files.flows]
            clip["flow"] = (
                torch.from_numpy(np.stack(flows)).permute(0, 3, 1, 2) if flows else torch.zeros(0, 2, *size)
            )
        return clip

    def current_label(self, index: int) -> np.ndarray:
        """The current frame's label alone (for the class index), H x W uint8 train ids."""
        path = self.samples[index].labels[-1]
        if not self.labelled or path is None:
            raise DataFileError(f"{self.dataset_name} clip {index} has no label on its current frame")
        return self.read_label(path)

    def _labels(self, files: ClipFiles, frame_shape: tuple[int, int]) -> torch.Tensor:
        """Long [T, h, w]: each frame's label where it has one, ``ignore_index`` elsewhere."""
        decoded = {k: self.read_label(p) for k, p in enumerate(files.labels) if p is not None}
        expected = self.label_shape(frame_shape) or decoded[len(files.labels) - 1].shape[:2]
        labels = np.full((len(files.labels),) + tuple(expected), self.ignore_index, dtype=np.int64)
        for k, label in decoded.items():
            check_size(label.shape, expected, files.labels[k], "label")
            labels[k] = label
            if self.ignore_index != 255:
                labels[k][label == 255] = self.ignore_index
        return torch.from_numpy(labels)

    def read_flow(self, flow: FlowFile, size: tuple[int, int]) -> np.ndarray:
        """The flow in dastc's format, else the published one, resized to ``size``: H x W x 2 float32."""
        if flow.ours.is_file():
            array = read_flow_png(flow.ours)
        elif flow.published.is_file():
            array = read_flow_int16_x10(flow.published)
        else:
            raise DataFileError(
                f"flow file {flow.ours} is missing (and so is the published {flow.published.name}); "
                f"compute it with `{self.flow_command}`"
            )
        return resize_flow_array(self.flow_on_frame_grid(array, size), size)

    def flow_pairs(self) -> list[tuple[Path, Path, Path]]:
        """(current frame, previous frame, output file) for every flow the samples need, each once, in order:
        what a flow estimator computes (the flow on the current frame's grid pointing into the previous one)."""
        if self.flow_dir is None:
            raise ValueError(f"{self.dataset_name}: set flow_dir to say where the flow files go")
        pairs = {f.ours: (f.current, f.previous, f.ours) for s in self.samples for f in s.flows}
        return list(pairs.values())
