"""Tiny copies of SYNTHIA-Seq, VIPER and Cityscapes-Seq in each dataset's on-disk encoding, for the reader, tool
and end-to-end tests.

The single-dataset writers (``make_synthia``, ``make_viper``, ``make_cityscapes``) write what a reader test
asks for; ``write_synthia_benchmark`` / ``write_viper_benchmark`` write a whole benchmark under a data dir in
the folders that conf/dataset/synthia.yaml and viper.yaml point at, with its flows, and ``*_TINY`` are the
command-line overrides that read it at its tiny size.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from dastc.data.cityscapes_seq import CityscapesSeq
from dastc.data.real_clips import RealClips
from dastc.data.synthia_seq import LAYOUTS, SynthiaSeq
from dastc.data.viper import VIPER_COLOURS, Viper
from dastc.flow.io import write_flow_png


def write_image(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)
    return path


def rgb_frame(h: int, w: int, rgb: tuple[int, int, int]) -> np.ndarray:
    """An image as OpenCV writes it (BGR) whose pixels read back as ``rgb``."""
    return np.broadcast_to(np.array(rgb[::-1], dtype=np.uint8), (h, w, 3)).copy()


def uniform_flow(h: int, w: int, u: float, v: float) -> np.ndarray:
    return np.broadcast_to(np.array([u, v], dtype=np.float32), (h, w, 2)).copy()


def write_published_flow(path: Path, flow: np.ndarray) -> None:
    """A flow in the authors' published format: H x W x 2 int16 holding flow x 10."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.round(flow * 10).astype(np.int16))


# ---------------------------------------------------------------------------------------------- SYNTHIA-Seq
SY_H, SY_W, SY_CROP = 10, 8, 3  # written 10x8, read 7x8 after cropping 3 rows

# SYNTHIA class ids of the kept rows (including ids that no class space maps, and values beyond SYNTHIA's ids).
SY_IDS = np.full((SY_H - SY_CROP, SY_W), 3, dtype=np.uint16)
SY_IDS[0] = [0, 1, 2, 3, 4, 5, 6, 7]
SY_IDS[1] = [8, 9, 10, 11, 12, 13, 14, 15]
SY_IDS[2, :3] = [22, 300, 65535]


def synthia_label(ids: np.ndarray = SY_IDS, crop: int = SY_CROP) -> np.ndarray:
    """A 16-bit 3-channel label as OpenCV writes it (BGR) holding ``ids`` above ``crop`` rows of person: the class
    id in R (OpenCV channel 2), instance-like values in G and a valid class id (fence) in B, so that reading the
    wrong channel shows."""
    ids = np.concatenate([ids, np.full((crop, ids.shape[1]), 10, dtype=np.uint16)])
    h, w = ids.shape
    bgr = np.empty((h, w, 3), dtype=np.uint16)
    bgr[..., 0] = 5
    bgr[..., 1] = 1000 + np.arange(h * w, dtype=np.uint16).reshape(h, w)
    bgr[..., 2] = ids
    return bgr


def make_synthia(
    root: Path,
    layout: str = "flattened",
    frames=range(4),
    labels=range(4),
    ids: np.ndarray = SY_IDS,
    crop: int = SY_CROP,
) -> Path:
    """Frames and labels numbered as SYNTHIA-Seq's, ``ids`` above ``crop`` rows that the reader cuts."""
    frames_dir, labels_dir = (root / d for d in LAYOUTS[layout])
    h, w = ids.shape[0] + crop, ids.shape[1]
    for t in frames:
        image = rgb_frame(h, w, (10 * t, 100, 200))
        image[h - crop :] = (0, 0, 255)  # the cropped rows read as pure red
        write_image(frames_dir / f"{t:06d}.png", image)
    for t in labels:
        write_image(labels_dir / f"{t:06d}.png", synthia_label(ids, crop))
    return root


def synthia_flows(flow_dir: Path, ts) -> Path:
    # Written at twice the clip's size: read back halved.
    for t in ts:
        flow_dir.mkdir(parents=True, exist_ok=True)
        write_flow_png(flow_dir / f"{t:06d}.png", uniform_flow(2 * (SY_H - SY_CROP), 2 * SY_W, 2.0 * t, -4.0))
    return flow_dir


# ---------------------------------------------------------------------------------------------------- VIPER
VP_H, VP_W = 8, 12

# Raw VIPER ids. Cars (24): the ego bonnet (rows 6-7, cols 4-7, holding the bottom-row centre (7, 6)), a car
# on the bottom row that does not touch it (rows 6-7, cols 0-1) and one up in the scene (rows 2-3, cols 8-9).
# All regions are aligned on 2x2 blocks so that a 2x nearest downscale keeps every one of them.
VP_IDS = np.array(
    [
        [2, 2, 2, 2, 7, 7, 8, 8, 2, 2, 0, 0],
        [2, 2, 2, 2, 7, 7, 8, 8, 2, 2, 0, 0],
        [9, 9, 11, 11, 13, 13, 14, 14, 24, 24, 25, 25],
        [9, 9, 11, 11, 13, 13, 14, 14, 24, 24, 25, 25],
        [4, 4, 20, 20, 6, 6, 27, 27, 26, 26, 23, 23],
        [4, 4, 20, 20, 6, 6, 27, 27, 26, 26, 23, 23],
        [24, 24, 3, 3, 24, 24, 24, 24, 3, 3, 22, 22],
        [24, 24, 3, 3, 24, 24, 24, 24, 3, 3, 22, 22],
    ],
    dtype=np.uint8,
)


def viper_png(path: Path, ids: np.ndarray, encoding: str = "palette") -> Path:
    """A VIPER class PNG: indexed with the VIPER colours (palette), grey, or coloured RGB."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if encoding == "palette":
        image = Image.fromarray(ids)
        image.putpalette([c for colour in VIPER_COLOURS for c in colour])
    elif encoding == "grey":
        image = Image.fromarray(ids)
    else:
        image = Image.fromarray(np.array(VIPER_COLOURS, dtype=np.uint8)[ids])
    image.save(path)
    return path


def make_viper(root: Path, images=None, labels=None, ids: np.ndarray = VP_IDS) -> Path:
    """JPG frames and palette class PNGs (of ``ids``) numbered as VIPER's train split. Default: sequence 001,
    images 8..11 and 0, labels 0 and 10; sequence 002, image and label 10 without frame 9."""
    images = images or {"001": [0, 8, 9, 10, 11], "002": [10]}
    labels = labels or {"001": [0, 10], "002": [10]}
    h, w = ids.shape
    for seq, ts in images.items():
        for t in ts:
            frame = rgb_frame(h, w, (8 * t, 50, 150))
            write_image(root / "train" / "img" / seq / f"{seq}_{t:05d}.jpg", frame)
    for seq, ts in labels.items():
        for t in ts:
            viper_png(root / "train" / "cls" / seq / f"{seq}_{t:05d}.png", ids)
    return root


# ------------------------------------------------------------------------------------------- Cityscapes-Seq
CS_H, CS_W = 8, 16  # files at 8x16 ("2048x1024"), frames read at 4x8 ("1024x512")
CS_SIZE = (4, 8)


def cityscapes_label_ids() -> np.ndarray:
    """Every label id 0..33 once (row-major), then road; plus an id outside the table (200)."""
    ids = np.full(CS_H * CS_W, 7, dtype=np.uint8)
    ids[:34] = np.arange(34)
    ids[34] = 200
    return ids.reshape(CS_H, CS_W)


def make_cityscapes(
    root: Path, split: str, snippets: dict, labels: dict | None, label_ids: np.ndarray | None = None
) -> Path:
    """``snippets``: (city, seq) -> frame numbers written; ``labels``: (city, seq) -> annotated frames, whose
    labelIds PNGs hold ``label_ids`` (default :func:`cityscapes_label_ids`); frames have the labels' size."""
    label_ids = cityscapes_label_ids() if label_ids is None else label_ids
    h, w = label_ids.shape
    for (city, seq), frames in snippets.items():
        for t in frames:
            name = f"{city}_{seq}_{t:06d}_leftImg8bit.png"
            write_image(
                root / "leftImg8bit_sequence" / split / city / name, rgb_frame(h, w, (t % 250, 20, 30))
            )
    for (city, seq), frames in (labels or {}).items():
        for t in frames:
            name = f"{city}_{seq}_{t:06d}_gtFine_labelIds.png"
            write_image(root / "gtFine" / split / city / name, label_ids)
    return root


def cityscapes_val(root: Path) -> Path:
    snippets = {("frankfurt", "000000"): [292, 293, 294], ("lindau", "000001"): [19]}  # lindau lacks t-1
    return make_cityscapes(
        root, "val", snippets, {("frankfurt", "000000"): [294], ("lindau", "000001"): [19]}
    )


# --------------------------------------------------------------------------------------- whole benchmarks
# Sizes of the benchmark copies: SYNTHIA 40x64 files cropped to 32x64, VIPER 32x48, Cityscapes 64x128 files
# ("2048x1024") read at 32x64 ("1024x512"), validation labels kept at 64x128.
BENCH_SYNTHIA_CROP = 8
BENCH_CITYSCAPES_SIZE = (32, 64)
CITYSCAPES_TINY = [
    f"dataset.target.dataset.size=[{BENCH_CITYSCAPES_SIZE[0]},{BENCH_CITYSCAPES_SIZE[1]}]",
    f"dataset.val.size=[{BENCH_CITYSCAPES_SIZE[0]},{BENCH_CITYSCAPES_SIZE[1]}]",
]
SYNTHIA_TINY = [f"dataset.source.dataset.crop_bottom={BENCH_SYNTHIA_CROP}", *CITYSCAPES_TINY]
VIPER_TINY = ["dataset.source.dataset.size=null", *CITYSCAPES_TINY]  # VIPER read at its 32x48 file size

# Valid raw ids in blocks, every class of the benchmark's space present: SYNTHIA ids 0..15 in 8x8 blocks;
# VIPER's pattern (ego car included) 4x larger; Cityscapes label ids 0..33 (then road) in 8x8 blocks.
BENCH_SYNTHIA_IDS = np.kron(np.arange(32, dtype=np.uint16).reshape(4, 8) % 16, np.ones((8, 8), np.uint16))
BENCH_VIPER_IDS = np.kron(VP_IDS, np.ones((4, 4), np.uint8))
BENCH_CITYSCAPES_IDS = np.kron(
    np.where(np.arange(128) < 34, np.arange(128), 7).astype(np.uint8).reshape(8, 16),
    np.ones((8, 8), np.uint8),
)


def write_cityscapes_benchmark(root: Path) -> Path:
    """Cityscapes-Seq train (2 annotated snippets, frame numbers restarting and running on) and val (2). Train
    keeps what positions place (docs/benchmarks.md): aachen's 17..19 (numbered per snippet, annotated 19) and
    bochum's snippet 294..323 up to its annotated 313."""
    train = {("aachen", "000000"): [17, 18, 19], ("bochum", "000000"): list(range(294, 314))}
    val = {("frankfurt", "000000"): [292, 293, 294], ("lindau", "000001"): [17, 18, 19]}
    for split, snippets in (("train", train), ("val", val)):
        annotated = {key: [frames[-1]] for key, frames in snippets.items()}
        make_cityscapes(root, split, snippets, annotated, BENCH_CITYSCAPES_IDS)
    return root


def write_flows(reader: RealClips, u: float = 0.5, v: float = -0.25) -> int:
    """A uniform flow for every flow the reader's clips need, at its current frame file's size; returns the
    number written."""
    pairs = reader.flow_pairs()
    for current, _, output in pairs:
        h, w = cv2.imread(str(current), cv2.IMREAD_UNCHANGED).shape[:2]
        output.parent.mkdir(parents=True, exist_ok=True)
        write_flow_png(output, uniform_flow(h, w, u, v))
    return len(pairs)


def cityscapes_readers(data_dir: Path, space: str) -> list[CityscapesSeq]:
    """The target train and val readers of the benchmark configs (flow read when there, not required)."""
    kwargs = {"flow_dir": data_dir / "flow" / "cityscapes_seq", "size": BENCH_CITYSCAPES_SIZE}
    return [
        CityscapesSeq(data_dir / "Cityscapes", split, space, require_flow=False, **kwargs)
        for split in ("train", "val")
    ]


def synthia_readers(data_dir: Path) -> list[RealClips]:
    """The readers of ``dataset=synthia`` over :func:`write_synthia_benchmark`'s copy (flow read when there)."""
    source = SynthiaSeq(
        data_dir / "SYNTHIA-SEQS-04-DAWN",
        flow_dir=data_dir / "flow" / "synthia_seq",
        require_flow=False,
        crop_bottom=BENCH_SYNTHIA_CROP,
    )
    return [source, *cityscapes_readers(data_dir, "synthia")]


def viper_readers(data_dir: Path) -> list[RealClips]:
    """The readers of ``dataset=viper`` over :func:`write_viper_benchmark`'s copy (flow read when there)."""
    source = Viper(data_dir / "VIPER", flow_dir=data_dir / "flow" / "viper", require_flow=False, size=None)
    return [source, *cityscapes_readers(data_dir, "viper")]


def write_synthia_benchmark(data_dir: Path, flow: bool = True) -> Path:
    """SYNTHIA-Seq (original archive layout, frames 0..5: clips t = 1..5) and Cityscapes-Seq under ``data_dir``,
    with every flow the clips need when ``flow``."""
    make_synthia(
        data_dir / "SYNTHIA-SEQS-04-DAWN",
        "original",
        range(6),
        range(6),
        BENCH_SYNTHIA_IDS,
        BENCH_SYNTHIA_CROP,
    )
    write_cityscapes_benchmark(data_dir / "Cityscapes")
    if flow:
        for reader in synthia_readers(data_dir):
            write_flows(reader)
    return data_dir


def write_viper_benchmark(data_dir: Path, flow: bool = True) -> Path:
    """VIPER (sequence 001: labels 10 and 20; 002: label 10: three clips) and Cityscapes-Seq under
    ``data_dir``, with every flow the clips need when ``flow``."""
    images = {"001": [9, 10, 19, 20], "002": [9, 10]}
    labels = {"001": [10, 20], "002": [10]}
    make_viper(data_dir / "VIPER", images, labels, BENCH_VIPER_IDS)
    write_cityscapes_benchmark(data_dir / "Cityscapes")
    if flow:
        for reader in viper_readers(data_dir):
            write_flows(reader)
    return data_dir


# ----------------------------------------------------------------------------------- image benchmarks (s. 9)
# GTA5 images 48x80 read at 32x64 (labels nearest-resized alike); SYNTHIA-RAND 32x64 as stored; Cityscapes
# images 64x128 read at 32x64, validation labels kept at 64x128.
IMAGE_TINY = [
    "dataset.source.augment.crop_size=[32,64]",
    "dataset.target.dataset.size=[32,64]",
    "dataset.val.size=[32,64]",
]
GTA5_TINY = ["dataset.source.dataset.size=[32,64]", *IMAGE_TINY]
SYNTHIA_IMAGE_TINY = IMAGE_TINY
# Every Cityscapes label id 0..33 (then road, and 255 which no table maps) in 8x8 blocks.
GTA5_IDS = np.kron(
    np.where(np.arange(60) < 34, np.arange(60), 7).astype(np.uint8).reshape(6, 10), np.ones((8, 8), np.uint8)
)
# SYNTHIA-RAND class ids 0..22 (then road) in 8x8 blocks.
SYNTHIA_IMAGE_IDS = np.kron(
    np.where(np.arange(32) < 23, np.arange(32), 3).astype(np.uint16).reshape(4, 8), np.ones((8, 8), np.uint16)
)


def palette_png(path: Path, ids: np.ndarray) -> Path:
    """A palette PNG whose indices are ``ids`` (GTA5's label encoding), with Cityscapes-like colours."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(ids.astype(np.uint8), mode="P")
    image.putpalette(list(np.random.default_rng(0).integers(0, 256, 768).astype(np.uint8)))
    image.save(path)
    return path


def write_gta5(root: Path, count: int = 3) -> Path:
    h, w = GTA5_IDS.shape
    for n in range(1, count + 1):
        write_image(root / "images" / f"{n:05d}.png", rgb_frame(h, w, (n * 40, 90, 30)))
        palette_png(root / "labels" / f"{n:05d}.png", GTA5_IDS)
    return root


def write_synthia_image(root: Path, count: int = 3) -> Path:
    h, w = SYNTHIA_IMAGE_IDS.shape
    for n in range(count):
        write_image(root / "RGB" / f"{n:07d}.png", rgb_frame(h, w, (n * 40, 60, 90)))
        write_image(root / "GT" / "LABELS" / f"{n:07d}.png", synthia_label(SYNTHIA_IMAGE_IDS, crop=0))
    return root


def write_cityscapes_images(root: Path) -> Path:
    """Cityscapes leftImg8bit train (3 images, unlabelled) and val (2 images with labelIds)."""
    h, w = BENCH_CITYSCAPES_IDS.shape
    for split, names in (("train", ["aachen_000000_000019", "aachen_000001_000019", "bochum_000000_000313"]),
                         ("val", ["frankfurt_000000_000294", "lindau_000001_000019"])):  # fmt: skip
        for k, stem in enumerate(names):
            city = stem.split("_")[0]
            write_image(
                root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
                rgb_frame(h, w, (k * 50, 20, 30)),
            )
            if split == "val":
                write_image(
                    root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", BENCH_CITYSCAPES_IDS
                )
    return root


def write_image_benchmark(data_dir: Path, name: str) -> Path:
    """``dataset=gta5`` or ``synthia_image`` under ``data_dir``, where conf/dataset/<name>.yaml looks."""
    if name == "gta5":
        write_gta5(data_dir / "GTA5")
    else:
        write_synthia_image(data_dir / "RAND_CITYSCAPES")
    write_cityscapes_images(data_dir / "Cityscapes")
    return data_dir
