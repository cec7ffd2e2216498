"""Sample panels: one clip drawn as a grid, a row per frame (oldest first) and a column per view (the frames,
labels, pseudo-labels, confidence, prediction). Pure NumPy/OpenCV, so loggers, PNG files and notebooks show
the same figure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np
import torch
from torchvision.utils import flow_to_image

from dastc.viz.colour import colourise

# Recorded tensor name -> column title, in column order. Label-like views are colourised with the palette.
COLUMNS = {
    "frames": "frame",
    "flow": "flow",
    "labels": "labels",
    "pseudo": "pseudo-labels",
    "confidence": "confidence",
    "prediction": "prediction",
}
LABEL_VIEWS = ("labels", "pseudo", "prediction")
_HEADER, _MARGIN, _EMPTY = 20, 34, 48  # title band and row-name margin in pixels; grey of a missing tile


def frames_to_rgb(frames: torch.Tensor) -> list[np.ndarray]:
    """Frames [T, 3, H, W], RGB in [0, 1] (the clip contract) -> T uint8 H x W x 3 images."""
    images = (frames.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8)
    return list(images.permute(0, 2, 3, 1).cpu().numpy())


def confidence_to_rgb(confidence: np.ndarray) -> np.ndarray:
    """Confidence in [0, 1], H x W -> viridis H x W x 3 uint8 (dark: unsure, yellow: sure)."""
    grey = (np.clip(confidence, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(grey, cv2.COLORMAP_VIRIDIS), cv2.COLOR_BGR2RGB)


def flow_to_rgb(flow: torch.Tensor) -> np.ndarray:
    """Flow [2, H, W] in pixels -> the usual colour wheel (hue: direction, saturation: length relative to the
    longest vector of this field), uint8 H x W x 3 (torchvision's flow_to_image)."""
    return flow_to_image(flow.detach().float().cpu()).permute(1, 2, 0).numpy()


def clip_views(record: Mapping[str, torch.Tensor], palette: np.ndarray) -> dict[str, list[np.ndarray | None]]:
    """Images per column title for one recorded clip. ``frames`` is [T, 3, H, W]; label-like views and
    ``confidence`` are [T', H, W] and ``flow`` [T', 2, H, W] for the last T' frames (pseudo-labels exist for
    (t-1, t), a validation label for t alone, flow i lies on frame i+1): earlier rows of that column stay
    empty (None)."""
    if "frames" not in record:
        raise KeyError(f"a sample panel needs the clip's frames, got only {sorted(record)}")
    count = record["frames"].shape[0]
    views: dict[str, list[np.ndarray | None]] = {}
    for key, title in COLUMNS.items():
        if key not in record:
            continue
        if key == "frames":
            views[title] = list(frames_to_rgb(record[key]))
            continue
        if len(record[key]) > count:
            raise ValueError(f"{key} has {len(record[key])} frames, the clip {count}")
        if key == "flow":
            tiles = [flow_to_rgb(f) for f in record[key]]
        elif key == "confidence":
            tiles = [confidence_to_rgb(m) for m in record[key].detach().cpu().numpy()]
        else:
            tiles = [colourise(m, palette) for m in record[key].detach().cpu().numpy()]
        views[title] = [None] * (count - len(tiles)) + tiles
    return views


def _fit(image: np.ndarray | None, size: tuple[int, int]) -> np.ndarray:
    height, width = size
    if image is None:
        return np.full((height, width, 3), _EMPTY, dtype=np.uint8)
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_NEAREST)


def _text(image: np.ndarray, text: str, x: int, y: int) -> None:
    cv2.putText(image, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)


def clip_panel(views: Mapping[str, Sequence[np.ndarray | None]], tile_width: int = 256) -> np.ndarray:
    """The grid image (uint8 H x W x 3) of ``clip_views``: every tile resized to ``tile_width`` at the first
    frame's aspect ratio, column titles on top, rows named t-(T-1) ... t on the left."""
    columns = list(views.items())
    if not columns or not columns[0][1] or columns[0][1][0] is None:
        raise ValueError("a sample panel needs at least one column whose first tile is an image")
    rows = len(columns[0][1])
    if any(len(tiles) != rows for _, tiles in columns):
        raise ValueError(f"every column of a sample panel needs {rows} tiles: {[len(t) for _, t in columns]}")
    first = columns[0][1][0]
    tile = (max(1, round(first.shape[0] * tile_width / first.shape[1])), tile_width)
    grid = np.zeros((_HEADER + rows * tile[0], _MARGIN + len(columns) * tile[1], 3), dtype=np.uint8)
    for c, (title, tiles) in enumerate(columns):
        x = _MARGIN + c * tile[1]
        _text(grid, title, x + 4, _HEADER - 6)
        for r, image in enumerate(tiles):
            y = _HEADER + r * tile[0]
            grid[y : y + tile[0], x : x + tile[1]] = _fit(image, tile)
    for r in range(rows):
        _text(
            grid, "t" if r == rows - 1 else f"t-{rows - 1 - r}", 2, _HEADER + r * tile[0] + tile[0] // 2 + 4
        )
    return grid
