"""Clip-consistent geometric augmentation and resizing on the clip contract (:mod:`dastc.data.clip`).

One parameter draw is applied to every frame, label and flow of a clip, so the frames stay aligned with each
other and with their flow. Flow (``[T-1, 2, H, W]``, ``flow[i]`` on frame i+1's grid pointing into frame i, see
:mod:`dastc.flow`) is a vector field, not an image: when the clip is resized its vectors are multiplied by the
size ratio (x and y apart), and when it is mirrored the field is mirrored and its x component negated.
:class:`AugmentedClips` applies a :class:`ClipAugment` to a clip dataset, reproducibly per clip.
"""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from dastc.data.class_index import current_label
from dastc.flow.warp import resize_flow

_SPATIAL_KEYS = ("frames", "labels", "flow")
# Albumentations treats the flow fields as an extra image sequence: same geometry as the frames, bilinear.
_TARGETS = {"flows": "images"}


def _describe(clip: dict) -> str:
    meta = clip.get("meta")
    return f" (clip {str(meta)[:200]})" if meta else ""


def check_clip(clip: dict) -> tuple[int, int, int]:
    """Check the shapes of ``frames`` [T, 3, H, W], ``labels`` [T, H, W] and ``flow`` [T-1, 2, H, W]; (T, H, W)."""
    frames = clip.get("frames")
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[1] != 3:
        shape = list(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise ValueError(f"clip frames must be a [T, 3, H, W] tensor, got {shape}{_describe(clip)}")
    t, _, h, w = frames.shape
    expected = {"labels": [t, h, w], "flow": [t - 1, 2, h, w]}
    for key, shape in expected.items():
        if key in clip and list(clip[key].shape) != shape:
            raise ValueError(
                f"clip {key} is {list(clip[key].shape)} but frames {list(frames.shape)} need {key} {shape}"
                f"{_describe(clip)}"
            )
    others = [k for k, v in clip.items() if isinstance(v, torch.Tensor) and k not in _SPATIAL_KEYS]
    if others:
        raise ValueError(
            f"clip holds tensors {others} that the geometric transform does not know{_describe(clip)}"
        )
    return t, h, w


def _to_arrays(clip: dict) -> dict[str, np.ndarray]:
    """The clip's tensors as albumentations arrays: images [T, H, W, 3], masks [T, H, W] uint8, flows [T-1, H, W, 2]."""
    arrays = {"images": clip["frames"].permute(0, 2, 3, 1).float().cpu().numpy()}
    if "labels" in clip:
        labels = clip["labels"]
        if labels.numel() and (labels.min() < 0 or labels.max() > 255):
            raise ValueError(
                f"clip labels must lie in [0, 255], got [{labels.min()}, {labels.max()}]{_describe(clip)}"
            )
        arrays["masks"] = labels.to(torch.uint8).cpu().numpy()
    if "flow" in clip and clip["flow"].shape[0] > 0:
        arrays["flows"] = clip["flow"].permute(0, 2, 3, 1).float().cpu().numpy()
    return arrays


def _from_arrays(clip: dict, arrays: dict[str, np.ndarray]) -> dict:
    """A new clip holding the transformed arrays, in the input tensors' dtypes and devices."""
    out = {k: v for k, v in clip.items() if k not in _SPATIAL_KEYS}
    frames = clip["frames"]
    out["frames"] = torch.from_numpy(np.ascontiguousarray(arrays["images"])).permute(0, 3, 1, 2)
    out["frames"] = out["frames"].to(frames.device, frames.dtype).contiguous()
    if "labels" in clip:
        out["labels"] = (
            torch.from_numpy(np.ascontiguousarray(arrays["masks"])).to(clip["labels"].device).long()
        )
    if "flow" in clip:
        flow = clip["flow"]
        if "flows" in arrays:
            new = torch.from_numpy(np.ascontiguousarray(arrays["flows"])).permute(0, 3, 1, 2).contiguous()
        else:  # a one-frame clip: keep an empty flow at the new size
            new = flow.new_zeros((0, 2, *out["frames"].shape[-2:]))
        out["flow"] = new.to(flow.device, flow.dtype)
    return out


class ClipAugment:
    """Random scaling, random crop and horizontal flip, drawn once per clip and applied to all its frames.

    - scaling: one factor drawn uniformly from ``scale_range`` for both axes (frames and flow bilinear, labels
      nearest); flow vectors are multiplied by the actual size ratio of each axis.
    - crop: a random ``crop_size`` (height, width) window; when the scaled clip is smaller it is first padded
      (centred) with 0 in frames and flow and ``ignore_index`` in labels. ``crop_size=None`` keeps the size.
    - flip: with probability ``hflip_p``, mirror everything left-right and negate flow x.

    ``augment(clip, rng)`` returns a new clip (``meta`` and other non-tensor entries are shared); ``rng`` is a
    ``numpy.random.Generator`` and is the only source of randomness, so a seeded generator reproduces the draw.
    """

    def __init__(
        self,
        crop_size: tuple[int, int] | None = None,
        scale_range: tuple[float, float] = (1.0, 1.0),
        hflip_p: float = 0.5,
        ignore_index: int = 255,
    ):
        low, high = (float(s) for s in scale_range)
        if not 0 < low <= high:
            raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {scale_range}")
        if not 0.0 <= hflip_p <= 1.0:
            raise ValueError(f"hflip_p must be a probability, got {hflip_p}")
        self.crop_size = None if crop_size is None else (int(crop_size[0]), int(crop_size[1]))
        self.scale_range = (low, high)
        self.hflip_p = hflip_p
        self.ignore_index = ignore_index
        # Two stages so the size after scaling is known exactly (albumentations truncates H*s and W*s apart).
        self._scale = A.Compose(
            [
                A.RandomScale(
                    scale_limit=(low - 1.0, high - 1.0),
                    interpolation=cv2.INTER_LINEAR,
                    mask_interpolation=cv2.INTER_NEAREST_EXACT,
                    p=1.0,
                )
            ],
            additional_targets=_TARGETS,
        )
        self._crop_flip = A.Compose(
            [*self._crop_transforms(), A.HorizontalFlip(p=hflip_p)],
            additional_targets=_TARGETS,
            save_applied_params=True,
        )

    def _crop_transforms(self) -> list:
        if self.crop_size is None:
            return []
        h, w = self.crop_size
        # RandomCrop(pad_if_needed=True) does not pad image sequences in albumentations 2.0.8: pad separately.
        return [
            A.PadIfNeeded(h, w, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=self.ignore_index),
            A.RandomCrop(h, w),
        ]

    def __repr__(self) -> str:
        return (
            f"ClipAugment(crop_size={self.crop_size}, scale_range={self.scale_range}, hflip_p={self.hflip_p}, "
            f"ignore_index={self.ignore_index})"
        )

    def __call__(self, clip: dict, rng: np.random.Generator) -> dict:
        """Augment ``clip`` (frames [T, 3, H, W], optional labels [T, H, W] and flow [T-1, 2, H, W])."""
        _, h, w = check_clip(clip)
        self._scale.set_random_seed(int(rng.integers(2**31)))
        self._crop_flip.set_random_seed(int(rng.integers(2**31)))
        arrays = self._scale(**_to_arrays(clip))
        scaled_h, scaled_w = arrays["images"].shape[1:3]
        if "flows" in arrays:
            arrays["flows"] = arrays["flows"] * np.array([scaled_w / w, scaled_h / h], dtype=np.float32)
        arrays = self._crop_flip(**arrays)
        flipped = any(name == "HorizontalFlip" for name, _ in arrays.pop("applied_transforms"))
        if flipped and "flows" in arrays:
            arrays["flows"] = arrays["flows"] * np.array([-1.0, 1.0], dtype=np.float32)
        return _from_arrays(clip, arrays)


def resize_clip(clip: dict, size: tuple[int, int]) -> dict:
    """Resize a clip to ``size`` (height, width): frames bilinear (antialiased when shrinking), labels nearest,
    flow bilinear with its vectors multiplied by the size ratio of each axis. Returns a new clip."""
    _, h, w = check_clip(clip)
    size = (int(size[0]), int(size[1]))
    if size == (h, w):
        return dict(clip)
    out = dict(clip)
    frames = clip["frames"]
    shrink = size[0] < h or size[1] < w
    out["frames"] = F.interpolate(
        frames.float(), size=size, mode="bilinear", align_corners=False, antialias=shrink
    ).to(frames.dtype)
    if "labels" in clip:
        # nearest-exact samples pixel centres, so labels stay aligned with the bilinear frames.
        labels = F.interpolate(clip["labels"][:, None].float(), size=size, mode="nearest-exact")
        out["labels"] = labels[:, 0].to(clip["labels"].dtype)
    if "flow" in clip:
        flow = clip["flow"]
        out["flow"] = (
            resize_flow(flow.float(), size).to(flow.dtype) if flow.shape[0] else flow.new_zeros((0, 2, *size))
        )
    return out


class AugmentedClips(Dataset):
    """A clip dataset whose clips pass through ``augment`` (a :class:`ClipAugment`), drawn per clip.

    The draw for clip ``index`` comes from an RNG seeded by ``(seed, index, draw)``, never from global state, so
    loader workers and a resumed run rebuild exactly the same clip. ``dataset[index]`` is draw 0;
    :meth:`sample` gives the clip's other draws (a caller that knows which pass over the data it is in passes
    that number, so that a clip is not augmented the same way on every pass).
    """

    def __init__(self, dataset: Dataset, augment: ClipAugment, seed: int = 0):
        self.dataset, self.augment, self.seed = dataset, augment, int(seed)

    def __len__(self) -> int:
        return len(self.dataset)

    def __repr__(self) -> str:
        return f"AugmentedClips({self.dataset!r}, {self.augment!r}, seed={self.seed})"

    def sample(self, index: int, draw: int = 0) -> dict:
        """Clip ``index`` augmented with draw number ``draw``."""
        rng = np.random.default_rng([self.seed, int(index), int(draw)])
        return self.augment(self.dataset[index], rng)

    def __getitem__(self, index: int) -> dict:
        return self.sample(index)

    def current_label(self, index: int) -> np.ndarray:
        """The un-augmented current label (for the class index of rare-class pasting: a flip or a crop moves
        classes around but rarely removes one)."""
        return current_label(self.dataset, index)
