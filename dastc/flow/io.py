"""Flow files.

dastc's own format is a 16-bit PNG in the KITTI convention (lossless, small for piecewise-smooth flow):
channels (u, v, valid) in RGB order, each component stored as ``flow * 64 + 32768``. It covers +-512 px at a
1/64 px step. The authors' published files (``*_int16_x10.npy``: H x W x 2 int16 holding flow x 10) are read too.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from dastc.errors import DataFileError

_PNG_SCALE = 64.0
_PNG_OFFSET = 32768.0
_PNG_LIMIT = (65535 - _PNG_OFFSET) / _PNG_SCALE


def write_flow_png(path: str | Path, flow: np.ndarray) -> None:
    """Write an H x W x 2 float flow as a 16-bit KITTI-style PNG."""
    flow = np.asarray(flow, dtype=np.float64)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must be H x W x 2, got {flow.shape}")
    if not np.isfinite(flow).all() or np.abs(flow).max(initial=0.0) >= _PNG_LIMIT:
        raise ValueError(f"flow for {path} is not finite or exceeds +-{_PNG_LIMIT:.0f} px")
    encoded = np.empty(flow.shape[:2] + (3,), dtype=np.uint16)
    encoded[..., :2] = np.round(flow * _PNG_SCALE + _PNG_OFFSET).astype(np.uint16)
    encoded[..., 2] = 1
    # OpenCV writes BGR: reverse so that the file holds (u, v, valid) in RGB order.
    if not cv2.imwrite(str(path), encoded[..., ::-1]):
        raise OSError(f"could not write flow file {path}")


def read_flow_png(path: str | Path) -> np.ndarray:
    """Read a flow PNG written by :func:`write_flow_png` as H x W x 2 float32."""
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        reason = "is missing" if not Path(path).exists() else "is not a readable PNG"
        raise DataFileError(f"flow file {path} {reason}")
    if raw.dtype != np.uint16 or raw.ndim != 3 or raw.shape[2] != 3:
        raise DataFileError(
            f"flow file {path} is not a 16-bit 3-channel flow PNG (got {raw.dtype}, {raw.shape})"
        )
    rgb = raw[..., ::-1].astype(np.float32)
    return (rgb[..., :2] - _PNG_OFFSET) / _PNG_SCALE


def read_flow_int16_x10(path: str | Path) -> np.ndarray:
    """Read one of the authors' published flow files (H x W x 2 int16 = flow x 10) as float32."""
    try:
        raw = np.load(path)
    except (OSError, ValueError) as err:
        raise DataFileError(f"flow file {path} could not be read: {err}") from None
    if raw.ndim != 3 or raw.shape[2] != 2:
        raise DataFileError(f"flow file {path} should be H x W x 2, got {raw.shape}")
    return raw.astype(np.float32) / 10.0
