"""VIPER, the source of ``dataset=viper`` (docs/benchmarks.md, VIPER).

    <root>/<split>/img/<seq>/<seq>_<frame:05d>.jpg     1920x1080 frames, loaded at 1280x720
    <root>/<split>/cls/<seq>/<seq>_<frame:05d>.png     class ids, on frames whose number ends in 0

``root`` is a folder or an ordered list of them, the first holding ``<split>/img`` and ``<split>/cls`` being
read (the config lists ``VIPER`` and DA-VSN/TPS's ``Viper``, whose inner layout is this one).
Class PNGs are read with PIL: an indexed (palette, mode P) or greyscale PNG holds the VIPER class id as the
pixel value. (OpenCV would expand a palette PNG to colours, hence PIL.) A 3-channel PNG is accepted when it is
either grey (R = G = B = id < 32) or coloured with the VIPER class colours below; any other colour is an error.
The ego vehicle (the recording car's bonnet: the car component touching the bottom-row centre) is ignored.
Flow files: dastc's ``<flow_dir>/<seq>/<seq>_<t:05d>.png`` or the authors' ``<flow_dir>/<seq>_<t:05d><t-1:05d>
_int16_x10.npy``, both the flow of frame t into frame t-1.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import cv2
import numpy as np

from dastc.data.class_spaces import VIPER, apply_lookup
from dastc.data.image_io import read_pil, read_rgb
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
from dastc.errors import DataFileError

SIZE = (720, 1280)  # (height, width) the frames are loaded at (docs/benchmarks.md, VIPER)
CAR_ID = 24
UNLABELED_ID = 0  # VIPER 'unlabeled': not in any class space, so it decodes to ignore

# VIPER class colours by class id (0 unlabeled, 1 ambiguous, 2 sky, 3 road, ... 31 boat), the colour coding of
# the VIPER release; only used to read 3-channel colour class PNGs. Ids 25 (van) and 29 (train) share a colour;
# neither is in the 15-class space, so the ambiguity is harmless.
VIPER_COLOURS = (
    (0, 0, 0), (111, 74, 0), (70, 130, 180), (128, 64, 128), (244, 35, 232), (230, 150, 140), (152, 251, 152),
    (87, 182, 35), (35, 142, 35), (70, 70, 70), (153, 153, 153), (190, 153, 153), (150, 20, 20), (250, 170, 30),
    (220, 220, 0), (180, 180, 100), (173, 153, 153), (168, 153, 153), (81, 0, 21), (81, 0, 81), (220, 20, 60),
    (255, 0, 0), (119, 11, 32), (0, 0, 230), (0, 0, 142), (0, 80, 100), (0, 60, 100), (0, 0, 70), (0, 0, 90),
    (0, 80, 100), (0, 100, 100), (50, 0, 90),
)  # fmt: skip

_NAME = re.compile(r"^(?P<seq>.+)_(?P<frame>\d{5})\.(?P<ext>jpg|png)$")


def read_viper_ids(path: Path) -> np.ndarray:
    """The raw VIPER class ids of a class PNG as H x W uint8 (see the module docstring for the encodings)."""
    mode, array = read_pil(path)
    if mode in ("P", "L", "I", "I;16") and array.ndim == 2:
        if array.max(initial=0) > 255:
            raise DataFileError(f"label {path} holds ids above 255; not a VIPER class PNG")
        return array.astype(np.uint8)
    if mode in ("RGB", "RGBA") and array.ndim == 3:
        return _ids_from_colours(array[..., :3], path)
    raise DataFileError(f"label {path} has PIL mode {mode}, not a VIPER class PNG (indexed, grey or RGB)")


def _ids_from_colours(rgb: np.ndarray, path: Path) -> np.ndarray:
    # Grey ids stay below 32; grey class colours (building (70, 70, 70), ...) are far above, so no confusion.
    grey = (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    if grey and rgb.max(initial=0) < len(VIPER_COLOURS):
        return rgb[..., 0].copy()
    codes = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    table = {(r << 16) | (g << 8) | b: i for i, (r, g, b) in reversed(list(enumerate(VIPER_COLOURS)))}
    uniques, inverse = np.unique(codes, return_inverse=True)
    unknown = [int(c) for c in uniques if int(c) not in table]
    if unknown:
        colours = [((c >> 16) & 255, (c >> 8) & 255, c & 255) for c in unknown[:3]]
        raise DataFileError(f"label {path} holds colours {colours} that are not VIPER class colours")
    return np.array([table[int(c)] for c in uniques], dtype=np.uint8)[inverse.reshape(rgb.shape[:2])]


def remove_ego_vehicle(ids: np.ndarray, car_id: int = CAR_ID, fill: int = UNLABELED_ID) -> np.ndarray:
    """Set the connected component of ``car_id`` that contains the bottom-row centre pixel to ``fill``.

    That component is the recording car's bonnet; other cars stay. 8-connectivity, as the authors' code
    (cv2.connectedComponents' default).
    """
    h, w = ids.shape
    if ids[h - 1, w // 2] != car_id:
        return ids
    _, components = cv2.connectedComponents((ids == car_id).astype(np.uint8), connectivity=8)
    out = ids.copy()
    out[components == components[h - 1, w // 2]] = fill
    return out


class Viper(RealClips):
    """Clips of ``num_frames`` consecutive VIPER frames ending on a labelled frame t, in the 15-class space.

    A sample is every frame t with a class PNG (frames ending in 0) whose images t-num_frames+1..t are present.
    Frames are resized to ``size`` (height, width; None keeps the native size) with area averaging, labels with
    nearest neighbour; the ego vehicle is ignored. Clip shapes: frames [T, 3, *size], labels [T, *size] (255 on
    frames without a class PNG), flow [T-1, 2, *size] (``flow[i]``: frame i+1 into frame i).
    """

    dataset_name = "viper"
    class_space = VIPER
    raw_label_ids = len(VIPER_COLOURS)  # VIPER class ids 0 (unlabeled) .. 31 (boat)

    def __init__(
        self,
        root: Root,
        num_frames: int = 2,
        flow_dir: str | os.PathLike | None = None,
        require_flow: bool = True,
        ignore_index: int = 255,
        size: tuple[int, int] | None = SIZE,
        split: str = "train",
    ):
        super().__init__(flow_dir, require_flow, flow_command("viper"), ignore_index, split)
        if num_frames < 1:
            raise ValueError("num_frames must be at least 1")
        self.num_frames = num_frames
        self.size = tuple(size) if size is not None else None
        self.num_classes = VIPER.num_classes
        self.root = find_root(
            root,
            lambda p: (p / split / "img").is_dir() and (p / split / "cls").is_dir(),
            lambda candidates: _missing(candidates, split),
        )
        images_dir, labels_dir = self.root / split / "img", self.root / split / "cls"
        for seq_dir in sorted(p for p in labels_dir.iterdir() if p.is_dir()):
            images = _numbered(list_dir(images_dir / seq_dir.name), "jpg")
            labels = _numbered(list_dir(seq_dir), "png")
            for t in sorted(labels):
                ids = list(range(t - num_frames + 1, t + 1))
                if ids[0] < 0:  # frame 0 has no previous frame: never a sample
                    continue
                missing = [i for i in ids if i not in images]
                if missing:
                    seq = seq_dir.name
                    self._note_missing(images_dir / seq / f"{seq}_{i:05d}.jpg" for i in missing)
                else:
                    self.samples.append(self._clip_files(seq_dir.name, ids, images_dir, labels_dir, labels))
        self._check_samples(self.root / split, num_frames)

    def _clip_files(
        self, seq: str, ids: list[int], images_dir: Path, labels_dir: Path, labels: set[int]
    ) -> ClipFiles:
        frames = tuple(images_dir / seq / f"{seq}_{i:05d}.jpg" for i in ids)
        flows = ()
        if self.flow_dir is not None:
            flows = tuple(
                FlowFile(
                    current=frames[k + 1],
                    previous=frames[k],
                    ours=self.flow_dir / seq / f"{seq}_{ids[k + 1]:05d}.png",
                    published=self.flow_dir / f"{seq}_{ids[k + 1]:05d}{ids[k]:05d}_int16_x10.npy",
                )
                for k in range(len(ids) - 1)
            )
        return ClipFiles(
            sequence=seq,
            frame_ids=tuple(ids),
            frames=frames,
            labels=tuple(labels_dir / seq / f"{seq}_{i:05d}.png" if i in labels else None for i in ids),
            flows=flows,
        )

    def read_frame(self, path: Path) -> np.ndarray:
        return resize_image(read_rgb(path), self.size)

    def read_raw_label(self, path: Path) -> np.ndarray:
        return read_viper_ids(path)

    def decode_label(self, raw: np.ndarray, path: Path) -> np.ndarray:
        return apply_lookup(VIPER.source_lut, remove_ego_vehicle(resize_label(raw, self.size)))


def _missing(candidates: list[Path], split: str) -> Exception:
    first = candidates[0] / split
    return missing_dataset(
        "VIPER",
        candidates,
        "download VIPER's train images (jpg) and class labels from https://playing-for-benchmarks.org",
        f"{first}/img/001/001_00010.jpg and {first}/cls/001/001_00010.png",
        f"{split}/img/ and {split}/cls/",
    )


def _numbered(names: list[str], ext: str) -> set[int]:
    """Frame numbers of the ``<seq>_<frame:05d>.<ext>`` names."""
    found = set()
    for name in names:
        match = _NAME.match(name)
        if match and match["ext"] == ext:
            found.add(int(match["frame"]))
    return found
