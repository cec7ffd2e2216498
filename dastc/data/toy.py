"""The embedded toy video domain-shift benchmark (``dataset=toy``).

Generated once into ``<data_dir>/toy`` (about 2 MB) and then read back from disk like any other dataset:

    toy/spec.json                              generator parameters; a different spec regenerates
    toy/<domain>/<split>/<seq:03d>/frames/<t:04d>.png|.jpg
    toy/<domain>/<split>/<seq:03d>/labels/<t:04d>.png    (source splits and target/val only)
    toy/<domain>/<split>/<seq:03d>/flow/<t:04d>.png      (frame t -> t-1, see dastc.flow.io; none for t = 0)

Target training sequences are written without labels, as in real unsupervised domain adaptation.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from rich.progress import Progress
from torch.utils.data import Dataset

from dastc.data.clip import check_size
from dastc.data.image_io import read_label, read_rgb
from dastc.data.toy_scenes import CLASS_NAMES, STYLES, make_scene, render
from dastc.errors import DataFileError, DatasetNotFoundError
from dastc.flow.io import read_flow_png, write_flow_png

GENERATOR_VERSION = 2


@dataclass(frozen=True)
class ToySpec:
    """What to generate. Changing any field regenerates the data directory."""

    height: int = 64
    width: int = 128
    frames_per_sequence: int = 16
    source_train_sequences: int = 12
    source_val_sequences: int = 3
    target_train_sequences: int = 12
    target_val_sequences: int = 6
    seed: int = 0

    def splits(self) -> dict[tuple[str, str], int]:
        return {
            ("source", "train"): self.source_train_sequences,
            ("source", "val"): self.source_val_sequences,
            ("target", "train"): self.target_train_sequences,
            ("target", "val"): self.target_val_sequences,
        }

    def to_json(self) -> dict:
        return {"generator_version": GENERATOR_VERSION, **asdict(self)}


def _has_labels(domain: str, split: str) -> bool:
    return not (domain == "target" and split == "train")


def ensure_toy_benchmark(root: str | os.PathLike, generate: bool = True, **spec_fields) -> Path:
    """Make sure ``root`` holds the toy benchmark for this spec; generate it (atomically) if not."""
    root = Path(root)
    spec = ToySpec(**spec_fields)
    spec_file = root / "spec.json"
    if spec_file.is_file() and json.loads(spec_file.read_text()) == spec.to_json():
        return root
    if not generate:
        raise DatasetNotFoundError(
            f"the toy benchmark is not at {root} (or was generated with other settings); "
            "set dataset.prepare.generate=true or point paths.data_dir at a directory that holds it"
        )
    if root.exists() and any(root.iterdir()) and not spec_file.is_file():
        raise DatasetNotFoundError(
            f"{root} exists but holds no toy benchmark (no spec.json); move it away or choose another paths.data_dir"
        )
    tmp = root.with_name(f".{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    _generate(tmp, spec)
    (tmp / "spec.json").write_text(json.dumps(spec.to_json(), indent=2))
    if root.exists():
        shutil.rmtree(root)
    os.replace(tmp, root)  # a killed generation never leaves a half-written benchmark behind
    return root


def _generate(out: Path, spec: ToySpec) -> None:
    total = sum(spec.splits().values()) * spec.frames_per_sequence
    with Progress(transient=True) as progress:
        task = progress.add_task(f"Generating the toy benchmark in {out.parent}", total=total)
        for split_id, ((domain, split), count) in enumerate(spec.splits().items()):
            style = STYLES[domain]
            for seq in range(count):
                # Geometry depends on (split, sequence) only; each domain and split has its own scenes.
                scene_rng = np.random.default_rng([spec.seed, split_id, seq])
                scene = make_scene(scene_rng, spec.height, spec.width, spec.frames_per_sequence)
                seq_dir = out / domain / split / f"{seq:03d}"
                for sub in ("frames", "flow") + (("labels",) if _has_labels(domain, split) else ()):
                    (seq_dir / sub).mkdir(parents=True, exist_ok=True)
                for t in range(spec.frames_per_sequence):
                    frame = render(scene, t, style, np.random.default_rng([spec.seed, split_id, seq, t, 7]))
                    name = f"{t:04d}"
                    params = [cv2.IMWRITE_JPEG_QUALITY, 92] if style.extension == ".jpg" else []
                    cv2.imwrite(
                        str(seq_dir / "frames" / (name + style.extension)), frame.image[..., ::-1], params
                    )
                    if _has_labels(domain, split):
                        cv2.imwrite(str(seq_dir / "labels" / f"{name}.png"), frame.label)
                    if t > 0:
                        write_flow_png(seq_dir / "flow" / f"{name}.png", frame.flow)
                    progress.advance(task)


class ToyClips(Dataset):
    """Clips of ``num_frames`` consecutive frames from one domain/split of the toy benchmark.

    Yields the clip contract: ``frames`` float [T, 3, H, W] RGB in [0, 1] (oldest first, the last one current),
    ``labels`` long [T, H, W] (source: every frame; target val: the current frame, others 255; target train:
    absent), ``flow`` float [T-1, 2, H, W] where ``flow[i]`` maps frame i+1 onto frame i, and ``meta``.
    """

    def __init__(
        self, root: str | os.PathLike, domain: str, split: str, num_frames: int, ignore_index: int = 255
    ):
        if domain not in STYLES or split not in ("train", "val"):
            raise ValueError(f"unknown toy domain/split {domain}/{split}")
        if num_frames < 1:
            raise ValueError("num_frames must be at least 1")
        self.root = Path(root)
        self.domain, self.split, self.num_frames = domain, split, num_frames
        self.ignore_index = ignore_index
        self.num_classes = len(CLASS_NAMES)
        self.labelled = _has_labels(domain, split)
        split_dir = self.root / domain / split
        if not split_dir.is_dir():
            raise DatasetNotFoundError(
                f"toy split {split_dir} is missing; delete {self.root} to regenerate it"
            )
        self.samples: list[tuple[Path, int, str]] = []
        for seq_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            frames = sorted((seq_dir / "frames").iterdir())
            ext = frames[0].suffix if frames else ".png"
            self.samples += [(seq_dir, t, ext) for t in range(num_frames - 1, len(frames))]
        if not self.samples:
            raise DatasetNotFoundError(f"toy split {split_dir} holds no clips of {num_frames} frames")

    def __len__(self) -> int:
        return len(self.samples)

    def current_label(self, index: int) -> np.ndarray:
        """The current frame's label alone (for the class index), H x W uint8."""
        if not self.labelled:
            raise DataFileError(f"toy {self.domain}/{self.split} clips carry no labels")
        seq_dir, t, _ = self.samples[index]
        return read_label(seq_dir / "labels" / f"{t:04d}.png", self.num_classes, self.ignore_index)

    def __getitem__(self, index: int) -> dict:
        seq_dir, t, ext = self.samples[index]
        ids = list(range(t - self.num_frames + 1, t + 1))
        paths = [seq_dir / "frames" / f"{i:04d}{ext}" for i in ids]
        images = [read_rgb(p) for p in paths]
        size = images[-1].shape[:2]
        for path, image in zip(paths, images, strict=True):
            check_size(image.shape, size, path, "frame")
        frames = np.stack(images)
        flows = []
        for i in ids[1:]:
            flow_path = seq_dir / "flow" / f"{i:04d}.png"
            flows.append(read_flow_png(flow_path))
            check_size(flows[-1].shape, size, flow_path, "flow")
        clip = {
            "frames": torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(255.0),
            "flow": torch.from_numpy(np.stack(flows)).permute(0, 3, 1, 2)
            if flows
            else torch.zeros(0, 2, *size),
            "meta": {
                "dataset": "toy",
                "domain": self.domain,
                "split": self.split,
                "sequence": seq_dir.name,
                "frame_ids": ids,
                "paths": [str(p) for p in paths],
            },
        }
        if self.labelled:
            # Source clips label every frame; target validation clips are scored on the current frame only.
            labelled_ids = ids if self.domain == "source" else ids[-1:]
            labels = np.full((len(ids),) + size, self.ignore_index, dtype=np.int64)
            for k, i in enumerate(ids):
                if i in labelled_ids:
                    label_path = seq_dir / "labels" / f"{i:04d}.png"
                    label = read_label(label_path, self.num_classes, self.ignore_index)
                    check_size(label.shape, size, label_path, "label")
                    labels[k] = label
            clip["labels"] = torch.from_numpy(labels)
        return clip
