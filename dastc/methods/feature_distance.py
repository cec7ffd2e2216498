"""ImageNet feature distance (DAFormer, Hoyer et al. CVPR 2022), an option of every method (docs/method.md,
ImageNet feature distance (option)).

A frozen copy of the student's encoder as it was built (with ImageNet weights when ``backbone.pretrained`` gave
some) computes the bottleneck features of the source current frame; the loss is the L2 distance over channels
between the student's bottleneck and the frozen one, averaged over the feature cells that a thing class fills
(a class holding at least ``scale_min_ratio`` of the cell's label pixels), times ``weight``.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from dastc.data.class_spaces import CITYSCAPES_COLOURS
from dastc.errors import ConfigError

log = logging.getLogger(__name__)


def thing_class_ids(names: Sequence[str], class_names: Sequence[str]) -> list[int]:
    """The ids of the thing classes ``names`` (method.fdist.thing_classes) in a benchmark's ``class_names``.

    Names are Cityscapes class names: those that the benchmark does not have (SYNTHIA-Seq has no truck) are
    left out; a name that is neither the benchmark's nor a Cityscapes class is an error, and so is a list
    that leaves no class of the benchmark."""
    class_names = list(class_names)
    for name in names:
        if name not in class_names and name not in CITYSCAPES_COLOURS:
            raise ConfigError(
                f"method.fdist.thing_classes names {name!r}, which is not a class of this benchmark "
                f"({', '.join(class_names)}) nor of Cityscapes"
            )
    ids = [class_names.index(name) for name in names if name in class_names]
    if not ids:
        raise ConfigError(
            f"method.fdist.thing_classes={list(names)} holds no class of this benchmark ({', '.join(class_names)})"
        )
    return sorted(set(ids))


def cell_classes(
    labels: torch.Tensor, size: tuple[int, int], num_classes: int, min_ratio: float, ignore_index: int = 255
) -> torch.Tensor:
    """Labels [B, H, W] downsampled to a feature grid ``size`` [B, h, w] as DAFormer's
    ``downscale_label_ratio`` does: each cell takes the class with the largest share of its pixels (ignored
    pixels count as a class of their own), or ``ignore_index`` when that share is below ``min_ratio`` or the
    class is the ignored one. The cells are adaptive average pooling's (rows floor(i H / h) to
    ceil((i + 1) H / h) - 1): DAFormer's H/h x W/w blocks when the sizes divide."""
    classes = torch.arange(num_classes + 1, device=labels.device)
    # Anything outside 0..C-1 (ignore_index) counts as class C, "ignored".
    labels = torch.where((labels >= 0) & (labels < num_classes), labels, num_classes)
    shares = F.adaptive_avg_pool2d((labels[:, None] == classes[None, :, None, None]).float(), size)
    share, cls = shares.max(1)
    ignored = (share < min_ratio) | (cls == num_classes)
    return torch.where(ignored, torch.full_like(cls, ignore_index), cls)


def masked_feature_distance(student: torch.Tensor, frozen: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the cells in ``mask`` [B, h, w] of the L2 norm over channels of ``student - frozen``
    [B, C, h, w] (DAFormer's ``masked_feat_dist``); zero, with a gradient path, when no cell is in the mask."""
    distance = torch.linalg.vector_norm(student.float() - frozen.float(), dim=1)
    return torch.where(mask, distance, 0.0).sum() / mask.sum().clamp(min=1)


class FrozenEncoder(nn.Module):
    """A deep copy of a network's bottleneck encoder, frozen: no gradients, always in eval mode (also when
    Lightning puts the method in train mode), run under ``no_grad``."""

    def __init__(self, network: nn.Module):
        super().__init__()
        if not hasattr(network, "bottleneck_encoder"):
            raise ConfigError(
                f"method.fdist.enabled=true needs a network with a bottleneck_encoder(); {type(network).__name__} "
                "has none"
            )
        self.encoder = copy.deepcopy(network.bottleneck_encoder())
        self.encoder.requires_grad_(False)
        self.encoder.eval()

    def train(self, mode: bool = True) -> FrozenEncoder:
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images)


class FeatureDistance(nn.Module):
    """``weight`` x the masked distance between the student's bottleneck and the frozen encoder's, on the
    source current frame, over cells of the ``thing_classes``.

    Built from the student as it is when the method is built, before ``model.init_from`` loads other weights
    into it: the frozen copy keeps the ImageNet (or random initial) weights. Its weights are part of the
    method's state dict, so checkpoints hold them (one encoder more) and a resumed or re-scored run gets them
    back exactly, whatever ``backbone.pretrained`` says then.
    """

    def __init__(
        self,
        student: nn.Module,
        class_names: Sequence[str],
        weight: float = 0.005,
        scale_min_ratio: float = 0.75,
        thing_classes: Sequence[str] = (),
        ignore_index: int = 255,
    ):
        super().__init__()
        self.frozen = FrozenEncoder(student)
        self.weight, self.scale_min_ratio, self.ignore_index = weight, scale_min_ratio, ignore_index
        self.num_classes = len(class_names)
        self.things = thing_class_ids(thing_classes, class_names)
        log.info(
            "ImageNet feature distance over the thing classes %s",
            ", ".join(f"{class_names[i]} ({i})" for i in self.things),
        )

    def thing_mask(self, labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """[B, h, w]: the feature cells of ``size`` whose class (``cell_classes``) is a thing class."""
        cells = cell_classes(labels, size, self.num_classes, self.scale_min_ratio, self.ignore_index)
        things = torch.tensor(self.things, device=labels.device)
        return (cells[..., None] == things).any(-1)

    def forward(self, images: torch.Tensor, bottleneck: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The weighted loss for images [B, 3, H, W] whose student bottleneck is ``bottleneck`` [B, C, h, w],
        with labels [B, H, W]."""
        frozen = self.frozen(images)
        mask = self.thing_mask(labels, tuple(bottleneck.shape[-2:]))
        return self.weight * masked_feature_distance(bottleneck, frozen, mask)


def warn_without_imagenet(cfg: DictConfig) -> None:
    """With the feature distance on and no ImageNet weights, the frozen encoder is the random one the run
    started from: allowed (the toy benchmark), but not what DAFormer's distance means."""
    fdist = cfg.get("method", {}).get("fdist") or {}
    if fdist.get("enabled") and cfg.get("backbone", {}).get("pretrained") is None:
        log.warning(
            "method.fdist is on but backbone.pretrained is null: the frozen encoder holds this run's random "
            "initial weights, so the feature distance pulls towards them, not towards ImageNet features (set "
            "backbone.pretrained=imagenet or a file; model.init_from still replaces the student's weights)"
        )
