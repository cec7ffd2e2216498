"""The published numbers (docs/benchmarks.md, Published numbers): per class on the video benchmarks
(Cityscapes-Seq val), in each benchmark's scored class order and with dastc's class names; mIoU alone for the
image extension (Cityscapes val; docs/benchmarks.md, Image benchmarks), used without per-class values. For
side-by-side tables."""

from __future__ import annotations

# Scored classes, in the published tables' column order (SYNTHIA-Seq: fence trained, not scored).
CLASSES = {
    "synthia": [
        "road", "sidewalk", "building", "pole", "traffic light", "traffic sign", "vegetation", "sky", "person",
        "rider", "car",
    ],
    "viper": [
        "road", "sidewalk", "building", "fence", "traffic light", "traffic sign", "vegetation", "terrain", "sky",
        "person", "car", "truck", "bus", "motorcycle", "bicycle",
    ],
}  # fmt: skip

# method -> (per-class IoU in CLASSES order, mIoU), copied from docs/benchmarks.md, Published numbers.
ROWS = {
    "synthia": {
        "Source only": ([56.3, 26.6, 75.6, 25.5, 5.7, 15.6, 71.0, 58.5, 41.7, 17.1, 27.9], 38.3),
        "DA-VSN": ([89.4, 31.0, 77.4, 26.1, 9.1, 20.4, 75.4, 74.6, 42.9, 16.1, 82.4], 49.5),
        "PixMatch": ([90.2, 49.9, 75.1, 23.1, 17.4, 34.2, 67.1, 49.9, 55.8, 14.0, 84.3], 51.0),
        "TPS": ([91.2, 53.7, 74.9, 24.6, 17.9, 39.3, 68.1, 59.7, 57.2, 20.3, 84.5], 53.8),
        "QuadMix / DA-STC (CNN)": ([90.8, 39.9, 83.2, 33.2, 30.1, 50.7, 84.8, 83.2, 61.2, 32.7, 87.4], 61.5),
        "QuadMix / DA-STC (ViT)": ([94.1, 61.9, 82.9, 36.9, 41.0, 59.1, 85.2, 85.6, 64.3, 37.8, 90.3], 67.2),
    },
    "viper": {
        "Source only": (
            [56.7, 18.7, 78.7, 6.0, 22.0, 15.6, 81.6, 18.3, 80.4, 59.9, 66.3, 4.5, 16.8, 20.4, 10.3],
            37.1,
        ),
        "PixMatch": (
            [79.4, 26.1, 84.6, 16.6, 28.7, 23.0, 85.0, 30.1, 83.7, 58.6, 75.8, 34.2, 45.7, 16.6, 12.4],
            46.7,
        ),
        "DA-VSN": (
            [86.8, 36.7, 83.5, 22.9, 30.2, 27.7, 83.6, 26.7, 80.3, 60.0, 79.1, 20.3, 47.2, 21.2, 11.4],
            47.8,
        ),
        "TPS": (
            [82.4, 36.9, 79.5, 9.0, 26.3, 29.4, 78.5, 28.2, 81.8, 61.2, 80.2, 39.8, 40.3, 28.5, 31.7],
            48.9,
        ),
        "QuadMix / DA-STC (CNN)": (
            [91.6, 51.4, 87.0, 24.1, 32.3, 37.2, 84.1, 28.4, 84.8, 64.4, 85.7, 41.4, 46.5, 34.0, 49.6],
            56.2,
        ),
        "QuadMix / DA-STC (ViT)": (
            [87.3, 43.8, 87.3, 25.2, 40.0, 36.9, 86.7, 20.8, 90.3, 65.8, 86.8, 48.6, 65.6, 37.6, 49.7],
            58.2,
        ),
    },
}


# method -> means, from docs/benchmarks.md, Image benchmarks (16- and 13-class mIoU on SYNTHIA). The SYNTHIA
# source-only figure "33.7 / 29.5" does not say which number is which, so it is left out.
IMAGE_ROWS = {
    "gta5": {
        "Source only": {"mIoU": 32.9},
        "DA-STC (CNN)": {"mIoU": 66.8},
        "DA-STC (ViT)": {"mIoU": 76.1},
    },
    "synthia_image": {
        "DA-STC (CNN)": {"mIoU": 60.9, "mIoU13": 67.4},
        "DA-STC (ViT)": {"mIoU": 67.5, "mIoU13": 74.3},
    },
}


def published(benchmark: str) -> dict[str, dict]:
    """``{method: {"IoU": {class: value}, "mIoU": value, ...}}`` for ``synthia``/``viper`` (per class) and
    ``gta5``/``synthia_image`` (means only, ``IoU`` empty); empty for others."""
    classes = CLASSES.get(benchmark, [])
    rows = {
        method: {"IoU": dict(zip(classes, values, strict=True)), "mIoU": miou}
        for method, (values, miou) in ROWS.get(benchmark, {}).items()
    }
    rows.update({method: {"IoU": {}, **means} for method, means in IMAGE_ROWS.get(benchmark, {}).items()})
    return rows
