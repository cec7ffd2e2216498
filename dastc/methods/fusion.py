"""Bidirectional spatio-temporal fusion (docs/method.md, Image-sequence fusion; Shallow-feature fusion): class
masks kept consistent through time, clip mixing at the image-sequence level, and the shallow-feature blend.

All functions work on one clip batch ``[B, T, ...]``. A mask is bool ``[B, T, H, W]``: True where the pixel is
taken from the *other* clip. The class set is chosen once per clip and used on every frame; each frame's mask
is that frame's own pixels of those classes, so pasted objects move with the clip and stay consistent with the
flow.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from dastc.flow.warp import warp


def _present(labels: torch.Tensor, ignore_index: int) -> torch.Tensor:
    classes = labels.unique()
    return classes[classes != ignore_index]


def _shuffled(values: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``values`` in a random order drawn from ``generator`` (a CPU generator: the same draws on any device)."""
    order = torch.randperm(len(values), generator=generator, device=generator.device)
    return values[order.to(values.device)]


def choose_source_classes(
    labels: torch.Tensor,
    generator: torch.Generator,
    num_random: int = 2,
    long_tail: Sequence[int] = (),
    ignore_index: int = 255,
) -> torch.Tensor:
    """Per clip: ``num_random`` classes drawn from those present in the current frame's label, plus the
    benchmark's long-tail classes. ``labels`` [B, H, W] -> class sets [B, K], padded with -1."""
    sets = []
    for label in labels:
        present = _present(label, ignore_index)
        pick = _shuffled(present, generator)[:num_random]
        tail = torch.as_tensor(list(long_tail), dtype=pick.dtype, device=pick.device)
        sets.append(torch.cat((pick, tail)).unique())
    return _pad(sets, labels.device)


def choose_target_classes(
    pseudo_labels: torch.Tensor,
    generator: torch.Generator,
    exclude: torch.Tensor,
    num_random: int = 2,
    ignore_index: int = 255,
) -> torch.Tensor:
    """Per clip: ``num_random`` classes drawn from the teacher's pseudo-labels of the current frame, excluding
    the clip's source class set (``exclude`` [B, K], -1 padded)."""
    sets = []
    for label, excluded in zip(pseudo_labels, exclude, strict=True):
        present = _present(label, ignore_index)
        present = present[~torch.isin(present, excluded.to(present.device))]
        sets.append(_shuffled(present, generator)[:num_random])
    return _pad(sets, pseudo_labels.device)


def _pad(sets: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """Class sets of different sizes as one [B, K] tensor on ``device``, padded with -1."""
    width = max((len(s) for s in sets), default=0)
    out = torch.full((len(sets), max(width, 1)), -1, dtype=torch.long, device=device)
    for i, s in enumerate(sets):
        out[i, : len(s)] = s
    return out


def class_mask(
    labels: torch.Tensor,
    classes: torch.Tensor,
    confidence: torch.Tensor | None = None,
    threshold: float = 0.9,
) -> torch.Tensor:
    """Bool [B, T, H, W]: each frame's own pixels of its clip's class set (``classes`` [B, K], -1 = none),
    restricted to ``confidence > threshold`` when a confidence map [B, T, H, W] is given."""
    b = labels.shape[0]
    mask = (labels.reshape(b, -1, 1) == classes.to(labels.device).view(b, 1, -1)).any(-1).view_as(labels)
    if confidence is not None:
        mask &= confidence > threshold
    return mask


def mix(own: torch.Tensor, other: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``other`` where ``mask``, ``own`` elsewhere. ``own``/``other`` [B, T, ...] with the mask [B, T, H, W]
    broadcast over channel dimensions between T and H, W."""
    while mask.dim() < own.dim():
        mask = mask.unsqueeze(2)
    return torch.where(mask, other, own)


def mix_clips(
    own: dict, other: dict, mask: torch.Tensor, own_labels: torch.Tensor, other_labels: torch.Tensor
) -> dict:
    """A mixed clip: frames and labels from ``other`` inside the mask, from ``own`` outside; the flow of each
    pixel comes from the clip its frame's pixel came from (``flow[:, i]`` lies on frame i+1's grid, so it
    follows frame i+1's mask)."""
    mixed = {
        "frames": mix(own["frames"], other["frames"], mask),
        "labels": mix(own_labels, other_labels, mask),
        "mask": mask,
    }
    if own.get("flow") is not None and own["flow"].shape[1] > 0:
        mixed["flow"] = mix(own["flow"], other["flow"], mask[:, 1:])
    return mixed


def blend_features(
    own: torch.Tensor, other: torch.Tensor, mask: torch.Tensor, alpha: float = 0.3
) -> torch.Tensor:
    """Shallow-feature fusion: inside the mask ``alpha * other + (1 - alpha) * own``, ``own`` outside.

    ``own``/``other`` [B, T, C, h, w]; ``mask`` [B, T, H, W] is resized (nearest) to h x w."""
    b, t = mask.shape[:2]
    small = F.interpolate(mask.flatten(0, 1)[:, None].float(), size=own.shape[-2:], mode="nearest")
    small = small.view(b, t, 1, *own.shape[-2:]).to(own.dtype)
    return own + small * alpha * (other - own)


def random_crop_box(height: int, width: int, crop: tuple[int, int], generator: torch.Generator) -> tuple:
    """A window of size ``crop`` (h, w) inside ``height`` x ``width``, the same for every frame of a clip."""
    ch, cw = crop
    if ch > height or cw > width:
        raise ValueError(f"crop {crop} is larger than the {height}x{width} frames")
    top = int(torch.randint(0, height - ch + 1, (1,), generator=generator, device=generator.device))
    left = int(torch.randint(0, width - cw + 1, (1,), generator=generator, device=generator.device))
    return top, left, ch, cw


def crop_box_holding(
    labels: torch.Tensor,
    cls: int,
    crop: tuple[int, int],
    generator: torch.Generator,
    min_pixels: int = 5,
    tries: int = 10,
) -> tuple:
    """A random window of size ``crop`` inside ``labels`` [H, W] that holds at least ``min_pixels`` pixels of
    class ``cls``: drawn again while it does not (the authors re-draw until more than 5 pixels of the rare
    class are inside), at most ``tries`` times, then the window that held the most."""
    best, best_count = None, -1
    for _ in range(tries):
        box = random_crop_box(*labels.shape[-2:], crop, generator)
        top, left, h, w = box
        count = int((labels[top : top + h, left : left + w] == cls).sum())
        if count >= min_pixels:
            return box
        if count > best_count:
            best, best_count = box, count
    return best


def crop_clip(clip: dict, box: tuple[int, int, int, int]) -> dict:
    """The same window (top, left, height, width) of every frame, label and flow of a clip batch [B, T, ...]."""
    top, left, h, w = box
    return {
        k: v[..., top : top + h, left : left + w]
        for k, v in clip.items()
        if k in ("frames", "labels", "flow") and v is not None
    }


def paste_rare_classes(mixed: dict, rare_clips: list[dict], rare_classes: torch.Tensor) -> dict:
    """Rare-class pasting (docs/method.md, Rare-class pasting): onto a mixed clip, each frame's own pixels of
    class ``rare_classes[:, k]`` from rare clip k (frames, labels and flow alike), one class per clip on every
    frame."""
    out = dict(mixed)
    for k, rare in enumerate(rare_clips):
        mask = class_mask(rare["labels"], rare_classes[:, k : k + 1])
        pasted = mix_clips(out, rare, mask, out["labels"], rare["labels"])
        out = {**pasted, "mask": out["mask"] | mask}
    return out


def flow_fallback(mask: torch.Tensor, flow: torch.Tensor | None) -> torch.Tensor | None:
    """Pixels of a mixed clip's current frame [B, H, W] that were pasted (``mask`` [B, T, H, W]) but whose flow
    does not lead into the pasted region of the previous frame: there the warped previous-frame scores would
    show the other clip, so the video network uses the current frame's own (None for images)."""
    if flow is None or flow.shape[1] == 0 or mask.shape[1] < 2:
        return None
    landed = warp(mask[:, -2:-1].to(flow.dtype), flow[:, -1], mode="nearest")[:, 0] > 0.5
    return mask[:, -1] & ~landed


def fill_unlabelled_frames(labels: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """Source labels [B, T, H, W] with every wholly unlabelled frame given the current frame's label: VIPER
    labels every 10th frame only (docs/benchmarks.md, VIPER), and a pasted object must still appear on frame
    t-1 (objects move little between neighbouring frames; the flow of the mixed clip follows the same
    mask)."""
    empty = (labels == ignore_index).flatten(2).all(-1)  # [B, T]
    if not empty.any():
        return labels
    current = labels[:, -1:].expand_as(labels)
    return torch.where(empty[..., None, None], current, labels)
