"""Optical flow estimators for offline flow computation.

Every estimator is a callable ``estimator(current, previous) -> flow``: ``current`` and ``previous`` are RGB
uint8 H x W x 3 frames of the same size, ``flow`` is float32 H x W x 2 (x then y, pixels) on the current frame's
grid pointing into the previous frame, so ``previous(x + flow(x)) ~ current(x)`` (the orientation of
:mod:`dastc.flow`).

- :class:`DISFlow`: OpenCV's Dense Inverse Search, CPU only, no weights; the default.
- :class:`RAFTFlow`: torchvision's RAFT, weights read from a local file only (never downloaded).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from dastc.errors import CheckpointError

_DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}

_RAFT_MIN_SIDE = 128
# torchvision weight sets the RAFT models are trained with; named in the error when the file is missing.
_RAFT_WEIGHTS = {"large": ("Raft_Large_Weights", "C_T_SKHT_V2"), "small": ("Raft_Small_Weights", "C_T_V2")}


def _check_pair(current: np.ndarray, previous: np.ndarray) -> None:
    for name, frame in (("current", current), ("previous", previous)):
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(
                f"the {name} frame must be an RGB uint8 H x W x 3 array, got {frame.dtype} {frame.shape}"
            )
    if current.shape != previous.shape:
        raise ValueError(f"frames differ in size: current {current.shape}, previous {previous.shape}")


class DISFlow:
    """OpenCV DIS optical flow (``cv2.DISOpticalFlow``) on grey-level frames.

    ``preset`` trades speed for accuracy: 'ultrafast', 'fast' or 'medium'. Picklable, so it can run in worker
    processes (the OpenCV object is created lazily in each process).
    """

    parallel_safe = True

    def __init__(self, preset: str = "medium"):
        if preset not in _DIS_PRESETS:
            raise ValueError(f"unknown DIS preset '{preset}'; choose one of {sorted(_DIS_PRESETS)}")
        self.preset = preset
        self._dis = None

    def __getstate__(self) -> dict:
        return {"preset": self.preset, "_dis": None}

    def __repr__(self) -> str:
        return f"DISFlow(preset={self.preset!r})"

    def __call__(self, current: np.ndarray, previous: np.ndarray) -> np.ndarray:
        """Flow [H, W, 2] float32 on ``current``'s grid pointing into ``previous`` (RGB uint8 H x W x 3 each)."""
        _check_pair(current, previous)
        if self._dis is None:
            self._dis = cv2.DISOpticalFlow_create(_DIS_PRESETS[self.preset])
        # calc(I0, I1) returns f with I0(x) ~ I1(x + f(x)): with I0 = current, I1 = previous that is our orientation.
        gray_current = cv2.cvtColor(current, cv2.COLOR_RGB2GRAY)
        gray_previous = cv2.cvtColor(previous, cv2.COLOR_RGB2GRAY)
        return self._dis.calc(gray_current, gray_previous, None).astype(np.float32, copy=False)


def raft_weights_hint(model: str) -> str:
    """Which torchvision weights file the RAFT ``model`` ('large' or 'small') expects, with its URL."""
    from torchvision.models import optical_flow

    enum_name, member = _RAFT_WEIGHTS[model]
    url = getattr(optical_flow, enum_name)[member].url
    return f"torchvision's {enum_name}.{member} ({url})"


def load_raft(weights_path: str | Path, model: str = "large"):
    """torchvision's RAFT ``model`` ('large' | 'small') with weights read from the local ``weights_path``."""
    import torch
    from torchvision.models.optical_flow import raft_large, raft_small

    if model not in _RAFT_WEIGHTS:
        raise ValueError(f"unknown RAFT model '{model}'; choose 'large' or 'small'")
    path = Path(weights_path).expanduser()
    if not path.is_file():
        raise CheckpointError(
            f"RAFT weights file {path} is missing: download {raft_weights_hint(model)} and save it at that path."
        )
    # weights=None: the architecture only; dastc never downloads weights itself.
    net = (raft_large if model == "large" else raft_small)(weights=None, progress=False)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
    # torch.load and load_state_dict fail in many ways on a wrong file (pickle, struct, zip, key errors).
    except Exception as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"RAFT weights file {path} does not hold {raft_weights_hint(model)}: {first_line}"
        ) from None
    return net.eval()


class RAFTFlow:
    """torchvision RAFT ('large' or 'small') with weights from a local file, on ``device``.

    Frames are padded (edge replication) to a multiple of 8 and at least 128 x 128, as RAFT needs, and the flow
    is cropped back.
    ``num_flow_updates`` is RAFT's number of refinement iterations (12 is torchvision's default).
    Runs in the calling process only (``parallel_safe = False``).
    """

    parallel_safe = False

    def __init__(
        self,
        weights_path: str | Path,
        model: str = "large",
        device: str = "cpu",
        num_flow_updates: int = 12,
    ):
        self.device = device
        self.num_flow_updates = num_flow_updates
        self.net = load_raft(weights_path, model).to(device)

    def __call__(self, current: np.ndarray, previous: np.ndarray) -> np.ndarray:
        """Flow [H, W, 2] float32 on ``current``'s grid pointing into ``previous`` (RGB uint8 H x W x 3 each)."""
        import torch
        import torch.nn.functional as F

        _check_pair(current, previous)
        h, w = current.shape[:2]
        # RAFT works at 1/8 resolution with a 4-level correlation pyramid: sides must be multiples of 8, >= 128.
        pad_h, pad_w = max(-h % 8, _RAFT_MIN_SIDE - h), max(-w % 8, _RAFT_MIN_SIDE - w)

        def to_input(frame: np.ndarray) -> torch.Tensor:
            x = torch.from_numpy(frame).to(self.device).permute(2, 0, 1)[None].float()
            x = x / 127.5 - 1.0  # RAFT expects [-1, 1]
            return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")

        with torch.inference_mode():
            # RAFT(image1, image2) estimates image1(x) ~ image2(x + f(x)): current first gives our orientation.
            flows = self.net(to_input(current), to_input(previous), num_flow_updates=self.num_flow_updates)
        flow = flows[-1][0, :, :h, :w]
        return flow.permute(1, 2, 0).float().cpu().numpy()


def build_estimator(name: str, **kwargs) -> DISFlow | RAFTFlow:
    """An estimator by name: 'dis' (kwargs: preset) or 'raft' (kwargs: weights_path, model, device, ...)."""
    estimators = {"dis": DISFlow, "raft": RAFTFlow}
    if name not in estimators:
        raise ValueError(f"unknown flow estimator '{name}'; choose one of {sorted(estimators)}")
    return estimators[name](**kwargs)
