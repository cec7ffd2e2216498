"""The image benchmarks of the extension (docs/benchmarks.md, Image benchmarks), read as clips of one frame
(no flow):

    GTA5                     <root>/images/<n:05d>.png, <root>/labels/<n:05d>.png   (labels: Cityscapes label ids,
                             as palette indices)
    SYNTHIA-RAND-CITYSCAPES  <root>/RGB/<n:07d>.png, <root>/GT/LABELS/<n:07d>.png   (labels: 16-bit PNG, the class
                             id in the R channel, as SYNTHIA-Seq's)
    Cityscapes               <root>/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png and
                             <root>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png

Each yields the clip contract with T = 1: ``frames`` [1, 3, H, W], ``labels`` [1, h, w] where labelled, no
``flow``. The methods treat such clips as images (dastc.methods.tps: pseudo-labels of the image itself).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import cv2
import numpy as np

from dastc.data.class_spaces import ClassSpace, apply_lookup
from dastc.data.class_spaces import space as class_space
from dastc.data.image_io import _imread, read_pil, read_rgb
from dastc.data.real_clips import ClipFiles, RealClips, list_dir, missing_dataset, resize_image, resize_label
from dastc.data.synthia_seq import decode_synthia_label
from dastc.errors import DataFileError, DatasetNotFoundError


class ImageClips(RealClips):
    """Base of the image readers: one sample per image, its label beside it (or none), no flow.

    Frames are resized to ``size`` (height, width; None: as stored). Labels follow the frame's size unless
    ``label_size`` is given, or ``full_resolution_labels`` keeps them as stored (validation: logits are
    upsampled to the label, docs/benchmarks.md, Evaluation protocol).
    """

    full_resolution_labels = False
    uses_flow = False

    def __init__(
        self,
        space: str | ClassSpace,
        size: tuple[int, int] | None,
        labelled: bool,
        label_size: tuple[int, int] | None = None,
        ignore_index: int = 255,
        split: str = "train",
        require_flow: bool = False,
    ):
        if require_flow:
            raise DataFileError(f"{self.dataset_name} holds single images: there is no flow to require")
        super().__init__(None, False, "", ignore_index, split)
        self.class_space = class_space(space)
        self.size = tuple(size) if size is not None else None
        self.label_size = tuple(label_size) if label_size is not None else None
        self.labelled = labelled
        self.num_classes = self.class_space.num_classes

    def _add(self, name: str, frame: Path, label: Path | None) -> None:
        self.samples.append(
            ClipFiles(sequence=name, frame_ids=(0,), frames=(frame,), labels=(label,), flows=())
        )

    def read_frame(self, path: Path) -> np.ndarray:
        return resize_image(read_rgb(path), self.size)

    def decode_label(self, raw: np.ndarray, path: Path) -> np.ndarray:
        decoded = apply_lookup(self.lookup, raw)
        if self.label_size is not None:
            return resize_label(decoded, self.label_size)
        if self.full_resolution_labels or self.size is None:
            return decoded
        return resize_label(decoded, self.size)

    @property
    def lookup(self) -> np.ndarray:
        return self.class_space.source_lut

    def label_shape(self, frame_shape: tuple[int, int]) -> tuple[int, int] | None:
        if self.label_size is not None:
            return self.label_size
        return None if self.full_resolution_labels else frame_shape


class NumberedImages(ImageClips):
    """A source dataset of numbered images beside numbered labels (``<frames_dir>/<n>.png``,
    ``<labels_dir>/<n>.png``, ``digits`` digits): GTA5 and SYNTHIA-RAND-CITYSCAPES differ only in their names
    and label encodings. An image without its label gives no sample (``missing_frames`` lists it)."""

    title: str = ""
    download: str = ""
    frames_dir: str = ""
    labels_dir: str = ""
    digits: int = 0
    first_file: str = ""  # named in the error when the dataset is not there

    def __init__(
        self,
        root: str | os.PathLike,
        size: tuple[int, int] | None,
        labelled: bool,
        space: str | ClassSpace,
        ignore_index: int = 255,
        require_flow: bool = False,
    ):
        super().__init__(space, size, labelled, None, ignore_index, require_flow=require_flow)
        self.root = Path(root)
        frames_dir, labels_dir = self.root / self.frames_dir, self.root / self.labels_dir
        if not frames_dir.is_dir():
            raise missing_dataset(self.title, self.root, self.download, frames_dir / self.first_file)
        frames, labels = self._numbered(frames_dir), self._numbered(labels_dir) if labelled else {}
        if labelled and not labels:
            raise DatasetNotFoundError(f"{self.title} labels are not at {labels_dir}: unpack them there")
        for stem in sorted(frames):
            if labelled and stem not in labels:
                self._note_missing([labels_dir / f"{stem}.png"])
                continue
            self._add(stem, frames_dir / frames[stem], labels_dir / labels[stem] if labelled else None)
        if not self.samples:
            raise DatasetNotFoundError(f"{self.title} at {self.root} holds no image with a label")

    def _numbered(self, folder: Path) -> dict[str, str]:
        """Stem -> file name of the ``<n>.png`` files in ``folder`` whose stem has ``digits`` digits."""
        names = list_dir(folder)
        return {
            n[:-4]: n for n in names if n.endswith(".png") and n[:-4].isdigit() and len(n) == self.digits + 4
        }


class GTA5Images(NumberedImages):
    """GTA5 (24,966 1914x1052 images; docs/benchmarks.md, Image benchmarks). Labels are palette PNGs whose
    indices are Cityscapes label ids, decoded into the 19 classes. Frames and labels are resized to ``size``
    (height, width; default 720x1280, the 1280x720 at which image-DA methods read GTA5)."""

    dataset_name = "gta5"
    raw_label_ids = 34
    title = "GTA5"
    download = (
        "download the images and labels parts from https://download.visinf.tu-darmstadt.de/data/from_games/"
    )
    frames_dir, labels_dir, digits, first_file = "images", "labels", 5, "00001.png"

    def __init__(
        self,
        root: str | os.PathLike,
        size: tuple[int, int] | None = (720, 1280),
        labelled: bool = True,
        space: str | ClassSpace = "gta5",
        ignore_index: int = 255,
        require_flow: bool = False,
    ):
        super().__init__(root, size, labelled, space, ignore_index, require_flow)

    def read_raw_label(self, path: Path) -> np.ndarray:
        mode, array = read_pil(path)
        if mode not in ("P", "L"):
            raise DataFileError(
                f"label {path} is a {mode} image; GTA5 labels are palette PNGs of Cityscapes label ids"
            )
        return array


class SynthiaImages(NumberedImages):
    """SYNTHIA-RAND-CITYSCAPES (9,400 1280x760 images; docs/benchmarks.md, Image benchmarks), decoded into 16
    classes. Frames and labels are resized to ``size`` (default: as stored)."""

    dataset_name = "synthia_image"
    raw_label_ids = 23
    title = "SYNTHIA-RAND-CITYSCAPES"
    download = "download SYNTHIA-RAND-CITYSCAPES from https://synthia-dataset.net"
    frames_dir, labels_dir, digits, first_file = "RGB", "GT/LABELS", 7, "0000000.png"

    def __init__(
        self,
        root: str | os.PathLike,
        size: tuple[int, int] | None = None,
        labelled: bool = True,
        space: str | ClassSpace = "synthia_image",
        ignore_index: int = 255,
        require_flow: bool = False,
    ):
        super().__init__(root, size, labelled, space, ignore_index, require_flow)

    def read_raw_label(self, path: Path) -> np.ndarray:
        return decode_synthia_label(_imread(path, cv2.IMREAD_UNCHANGED, "label"), path)


_CITYSCAPES_FRAME = re.compile(r"^(?P<stem>.+_\d{6}_\d{6})_leftImg8bit\.png$")


class CityscapesImages(ImageClips):
    """Cityscapes images (the target of the image benchmarks): ``split`` train (2,975, unlabelled) or val (500,
    labelled at full resolution, 2048x1024, while frames are resized to ``size``, default 512x1024)."""

    dataset_name = "cityscapes"
    raw_label_ids = 34

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        space: str | ClassSpace = "gta5",
        size: tuple[int, int] | None = (512, 1024),
        labelled: bool | None = None,
        label_size: tuple[int, int] | None = None,
        ignore_index: int = 255,
        require_flow: bool = False,
    ):
        if split not in ("train", "val"):
            raise ValueError(f"unknown Cityscapes split {split!r}; known: train, val")
        labelled = split == "val" if labelled is None else labelled
        super().__init__(space, size, labelled, label_size, ignore_index, split, require_flow)
        self.full_resolution_labels = True
        self.root = Path(root)
        frames_dir, labels_dir = self.root / "leftImg8bit" / split, self.root / "gtFine" / split
        if not frames_dir.is_dir():
            raise missing_dataset(
                "Cityscapes",
                self.root,
                "download leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip from https://www.cityscapes-dataset.com",
                frames_dir / "<city>" / "<city>_<seq>_<frame>_leftImg8bit.png",
            )
        for city in sorted(p.name for p in frames_dir.iterdir() if p.is_dir()):
            for name in list_dir(frames_dir / city):
                match = _CITYSCAPES_FRAME.match(name)
                if not match:
                    continue
                label = labels_dir / city / f"{match['stem']}_gtFine_labelIds.png"
                if labelled and not label.is_file():
                    self._note_missing([label])
                    continue
                self._add(match["stem"], frames_dir / city / name, label if labelled else None)
        if not self.samples:
            raise DatasetNotFoundError(
                f"Cityscapes at {frames_dir} holds no image" + (" with a label" if labelled else "")
            )

    @property
    def lookup(self) -> np.ndarray:
        return self.class_space.cityscapes_lut

    def read_raw_label(self, path: Path) -> np.ndarray:
        raw = _imread(path, cv2.IMREAD_UNCHANGED, "label")
        if raw.ndim != 2:
            raise DataFileError(f"label {path} should be a one-channel labelIds PNG, got shape {raw.shape}")
        return raw
