"""SYNTHIA-Seq (SYNTHIA-SEQS-04-DAWN), the source of ``dataset=synthia`` (docs/benchmarks.md, SYNTHIA-Seq).

``root`` is a folder or an ordered list of them, the first holding either layout being read (the config
lists ``SYNTHIA-SEQS-04-DAWN`` and DA-VSN/TPS's ``SynthiaSeq/SEQS-04-DAWN``). Two layouts are read, whichever
it holds:

    original archive: RGB/Stereo_Left/Omni_F/000000.png      GT/LABELS/Stereo_Left/Omni_F/000000.png
    flattened:        rgb/000000.png                         label/000000.png

Frames are 1280x760 and lose their bottom 120 rows (image and label) -> 1280x640. The label PNG is 16-bit with
several channels; the class id is the first channel in RGB order (R), which OpenCV, reading BGR, puts last.
Flow files: dastc's ``<flow_dir>/<t:06d>.png`` or the authors' ``<flow_dir>/<t:06d>_int16_x10.npy``, both the
flow of frame t into frame t-1, on either the cropped or the uncropped frame (then cropped the same way).
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from dastc.data.class_spaces import SYNTHIA, apply_lookup
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
)
from dastc.errors import DataFileError

# (frames folder, labels folder) of each layout, relative to the root; the first one present is used.
LAYOUTS = {
    "original": ("RGB/Stereo_Left/Omni_F", "GT/LABELS/Stereo_Left/Omni_F"),
    "flattened": ("rgb", "label"),
}
CROP_BOTTOM = 120  # rows removed from the bottom of every frame and label (docs/benchmarks.md, SYNTHIA-Seq)
# SYNTHIA class ids run from 0 (void) to 22 (lane marking) in the largest class list of any SYNTHIA release.
RAW_LABEL_IDS = 23


def decode_synthia_label(raw: np.ndarray, path: Path | str) -> np.ndarray:
    """SYNTHIA class ids from a label image as OpenCV returns it: BGR(A) -> channel 2 (= R); one channel as is."""
    if raw.ndim == 2:
        return raw
    if raw.ndim == 3 and raw.shape[2] >= 3:
        return raw[..., 2]
    raise DataFileError(f"label {path} should be a multi-channel SYNTHIA label PNG, got shape {raw.shape}")


def detect_layout(root: Path) -> str | None:
    """'original' or 'flattened', whichever frames folder exists under ``root``; None when neither does."""
    for name, (frames, _) in LAYOUTS.items():
        if (root / frames).is_dir():
            return name
    return None


class SynthiaSeq(RealClips):
    """Clips of ``num_frames`` consecutive SYNTHIA-Seq frames ending on a labelled frame t, in the 12-class space.

    A sample is every frame t whose frames t-num_frames+1..t are present and whose label exists (so 000000,
    with no previous frame, never is one); a partial copy gives fewer samples. ``labels`` hold every frame's
    label where its file exists, 255 elsewhere. ``crop_bottom`` rows are cut from frames and labels (120 for the
    real 1280x760 frames). Clip shapes: frames [T, 3, H-crop_bottom, W], labels [T, H-crop_bottom, W],
    flow [T-1, 2, H-crop_bottom, W] (``flow[i]``: frame i+1 into frame i).
    """

    dataset_name = "synthia_seq"
    class_space = SYNTHIA
    raw_label_ids = RAW_LABEL_IDS

    def __init__(
        self,
        root: Root,
        num_frames: int = 2,
        flow_dir: str | os.PathLike | None = None,
        require_flow: bool = True,
        ignore_index: int = 255,
        crop_bottom: int = CROP_BOTTOM,
    ):
        super().__init__(flow_dir, require_flow, flow_command("synthia"), ignore_index)
        if num_frames < 1:
            raise ValueError("num_frames must be at least 1")
        self.num_frames = num_frames
        self.crop_bottom = crop_bottom
        self.num_classes = SYNTHIA.num_classes
        self.root = find_root(root, lambda p: detect_layout(p) is not None, _missing)
        self.layout = detect_layout(self.root)
        frames_dir, labels_dir = (self.root / d for d in LAYOUTS[self.layout])
        frame_names = _numbered_pngs(frames_dir)
        label_names = _numbered_pngs(labels_dir)
        for t in sorted(label_names):
            ids = list(range(t - num_frames + 1, t + 1))
            if ids[0] < 0:  # 000000 has no previous frame: never a sample
                continue
            missing = [i for i in ids if i not in frame_names]
            if missing:
                self._note_missing(frames_dir / f"{i:06d}.png" for i in missing)
            else:
                self.samples.append(self._clip_files(frames_dir, labels_dir, ids, frame_names, label_names))
        self._check_samples(self.root, num_frames)

    def _clip_files(
        self, frames_dir: Path, labels_dir: Path, ids: list[int], frame_names: dict, label_names: dict
    ) -> ClipFiles:
        frames = tuple(frames_dir / frame_names[i] for i in ids)
        flows = ()
        if self.flow_dir is not None:
            flows = tuple(
                FlowFile(
                    current=frames[k + 1],
                    previous=frames[k],
                    ours=self.flow_dir / f"{ids[k + 1]:06d}.png",
                    published=self.flow_dir / f"{ids[k + 1]:06d}_int16_x10.npy",
                )
                for k in range(len(ids) - 1)
            )
        return ClipFiles(
            sequence=self.root.name,
            frame_ids=tuple(ids),
            frames=frames,
            labels=tuple(labels_dir / label_names[i] if i in label_names else None for i in ids),
            flows=flows,
        )

    def _crop(self, array: np.ndarray, path: Path) -> np.ndarray:
        if array.shape[0] <= self.crop_bottom:
            raise DataFileError(
                f"{path} is {array.shape[0]} rows high, no more than the {self.crop_bottom} cropped"
            )
        return array[: array.shape[0] - self.crop_bottom] if self.crop_bottom else array

    def flow_on_frame_grid(self, flow: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """Crop a flow computed on the uncropped frames (what the estimator sees in the frame files) like the
        frames. Which grid a flow lies on is told by its aspect ratio: 760/1280 uncropped vs 640/1280 cropped;
        cropping rows leaves the vectors (pixels at the flow's resolution) unchanged."""
        h, w = size
        raw_h = h + self.crop_bottom
        aspect = flow.shape[0] / flow.shape[1]
        if abs(aspect - raw_h / w) < abs(aspect - h / w):
            flow = flow[: round(flow.shape[0] * h / raw_h)]
        return flow

    def read_frame(self, path: Path) -> np.ndarray:
        return np.ascontiguousarray(self._crop(read_rgb(path), path))

    def read_raw_label(self, path: Path) -> np.ndarray:
        return decode_synthia_label(_imread(path, cv2.IMREAD_UNCHANGED, "label"), path)

    def decode_label(self, raw: np.ndarray, path: Path) -> np.ndarray:
        return apply_lookup(SYNTHIA.source_lut, self._crop(raw, path))


def _missing(candidates: list[Path]) -> Exception:
    return missing_dataset(
        "SYNTHIA-Seq",
        candidates,
        "download SYNTHIA-SEQS-04-DAWN from https://synthia-dataset.net",
        candidates[0] / LAYOUTS["original"][0] / "000001.png",
        " or ".join(f"{frames}/" for frames, _ in LAYOUTS.values()),
    )


def _numbered_pngs(folder: Path) -> dict[int, str]:
    """Frame number -> file name of the ``<digits>.png`` files in ``folder``."""
    return {
        int(name[:-4]): name for name in list_dir(folder) if name.endswith(".png") and name[:-4].isdigit()
    }
