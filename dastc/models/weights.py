"""Loading ImageNet ResNet weights from a local file (nothing is ever downloaded)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from dastc.errors import DastcError

log = logging.getLogger(__name__)

TORCHVISION_FILES = {
    18: "resnet18-f37072fd.pth",
    34: "resnet34-b627a593.pth",
    50: "resnet50-0676ba61.pth",
    101: "resnet101-63fe2227.pth",
}


class WeightsNotFoundError(DastcError):
    """A weights file named in the config is missing."""


def _where_to_get(fmt: str, depth: int) -> str:
    if fmt == "caffe":
        return "the Caffe-converted DeepLab_resnet_pretrained_imagenet.pth that ADVENT/DA-VSN/TPS start from"
    return (
        f"torchvision's ImageNet ResNet-{depth} weights ({TORCHVISION_FILES.get(depth, 'resnet*.pth')} from "
        "https://download.pytorch.org/models/)"
    )


def read_resnet_state_dict(
    path: str | Path, fmt: str = "torchvision", depth: int = 101
) -> dict[str, torch.Tensor]:
    """The trunk's tensors from a torchvision ResNet file or the Caffe-converted DeepLab file, with torchvision
    key names; classifier layers (``fc``, the Caffe file's ``layer5``) are dropped."""
    if fmt not in ("torchvision", "caffe"):
        raise ValueError(f"weights format must be 'torchvision' or 'caffe', got {fmt!r}")
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(
            f"ImageNet weights {path} not found: download {_where_to_get(fmt, depth)} and put the file there, "
            "or set backbone.pretrained=null to start from random weights"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.").removeprefix("Scale.")  # DataParallel / Caffe-conversion prefixes
        if key.split(".")[0] in ("fc", "layer5"):
            continue
        out[key] = value
    return out


def load_imagenet_resnet(
    trunk: nn.Module, path: str | Path, fmt: str = "torchvision", depth: int = 101
) -> None:
    """Load a local ImageNet ResNet file into ``trunk``, logging missing and unexpected keys."""
    state = read_resnet_state_dict(path, fmt, depth)
    result = trunk.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    log.info("Loaded %d tensors of ImageNet weights from %s", len(state) - len(result.unexpected_keys), path)
    if missing:
        log.warning(
            "%d trunk tensors missing from %s (left at random init): %s", len(missing), path, missing[:8]
        )
    if result.unexpected_keys:
        log.warning(
            "%d tensors of %s not used: %s", len(result.unexpected_keys), path, result.unexpected_keys[:8]
        )
