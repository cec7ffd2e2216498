"""Reading frames and label maps with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from dastc.errors import DataFileError


def _imread(path: Path, flags: int, what: str) -> np.ndarray:
    if not path.is_file():
        raise DataFileError(f"{what} {path} is missing")
    image = cv2.imread(str(path), flags)
    if image is None:
        raise DataFileError(f"{what} {path} is truncated or not a readable image")
    return image


def read_pil(path: Path, what: str = "label") -> tuple[str, np.ndarray]:
    """An image read with Pillow as (mode, array), keeping palette indices as they are (OpenCV would expand
    them to colours): for label PNGs stored as indexed images."""
    if not path.is_file():
        raise DataFileError(f"{what} {path} is missing")
    try:
        with Image.open(path) as image:
            image.load()
            return image.mode, np.asarray(image)
    except (OSError, ValueError, SyntaxError) as err:  # PIL's UnidentifiedImageError and truncation: OSErrors
        raise DataFileError(f"{what} {path} is truncated or not a readable image ({err})") from None


def read_rgb(path: str | Path) -> np.ndarray:
    """An RGB frame as H x W x 3 uint8."""
    image = _imread(Path(path), cv2.IMREAD_COLOR, "frame")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_label(path: str | Path, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """A single-channel train-id label map as H x W uint8; values must be class ids or ``ignore_index``."""
    label = _imread(Path(path), cv2.IMREAD_UNCHANGED, "label")
    if label.ndim != 2:
        raise DataFileError(f"label {path} should have one channel, got shape {label.shape}")
    bad = (label >= num_classes) & (label != ignore_index)
    if bad.any():
        values = sorted(int(v) for v in np.unique(label[bad])[:5])
        raise DataFileError(
            f"label {path} holds values {values} outside the {num_classes} class ids (and {ignore_index} = ignore)"
        )
    return label
