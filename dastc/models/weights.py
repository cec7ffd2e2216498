"""ImageNet start weights of the frame networks (docs/method.md, Model (ACCEL on DeepLab-v2)).

``backbone.pretrained`` is ``imagenet``, a local file or null (random init). ``imagenet`` is fetched the way the
libraries do it and cached where they cache it: torchvision's ResNets into the torch hub cache
(``$TORCH_HOME/hub/checkpoints``), smp's encoders from their Hugging Face repositories (the Hugging Face cache).
For ``backbone=accel`` the peers' Caffe-converted ``DeepLab_resnet_pretrained_imagenet.pth`` under
``${paths.data_dir}/weights/`` is preferred when it is there: :func:`resolve_pretrained` decides that (and the
weights format, which changes the network) before anything is built, and fails fast when nothing can be had.
"""

from __future__ import annotations

import logging
import socket
from contextlib import contextmanager
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from dastc.errors import ConfigError, DastcError

log = logging.getLogger(__name__)

IMAGENET = "imagenet"
FORMATS = ("torchvision", "caffe")
CAFFE_FILE = "DeepLab_resnet_pretrained_imagenet.pth"  # ADVENT/DA-VSN/TPS's start, a ResNet-101
TORCHVISION_URL = "https://download.pytorch.org/models/"
TORCHVISION_FILES = {  # torchvision's ResNet{depth}_Weights.IMAGENET1K_V1 (a test checks they agree)
    18: "resnet18-f37072fd.pth",
    34: "resnet34-b627a593.pth",
    50: "resnet50-0676ba61.pth",
    101: "resnet101-63fe2227.pth",
}
# Seconds a connection may stay silent: offline behind a firewall that drops packets, a run stops in seconds
# instead of waiting minutes for the system's connect timeout.
NETWORK_TIMEOUT_S = 8.0
SMP_FILE = "model.safetensors"  # what smp's own loader reads from its Hugging Face repositories
# Classifier layers no segmentation network uses: torchvision's ``fc``, the Caffe file's ``layer5``, MiT's ``head``.
CLASSIFIERS = ("fc", "layer5", "head")


class WeightsNotFoundError(DastcError):
    """Start weights that the config asks for are neither on disk nor downloadable."""


class WeightsFileError(DastcError):
    """A weights file does not fit the network it should start."""


def _detail(err: BaseException) -> str:
    """The error as a clause of a one-sentence message: its first line, at most about 150 characters."""
    text = (str(err).strip().splitlines() or [""])[0].rstrip(".").replace(". ", "; ")
    if len(text) > 150:
        text = text[:150].rsplit(" ", 1)[0] + "..."
    return f"{type(err).__name__}: {text}"


@contextmanager
def _socket_timeout(seconds: float):
    """urllib (torch.hub's downloads) waits forever by default; this bounds every connect and read."""
    before = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(before)


# --- torchvision ResNets -------------------------------------------------------------------------------------


def torch_cache_dir() -> Path:
    """Where torch.hub.load_state_dict_from_url (torchvision's weights) keeps downloaded files."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def fetch_torchvision_resnet(depth: int) -> Path:
    """torchvision's ImageNet ResNet-``depth`` file from the torch hub cache, downloaded there when missing."""
    if depth not in TORCHVISION_FILES:
        raise ConfigError(
            f"no torchvision ImageNet weights for ResNet-{depth} (depths {sorted(TORCHVISION_FILES)})"
        )
    name = TORCHVISION_FILES[depth]
    path, url = torch_cache_dir() / name, TORCHVISION_URL + name
    if path.is_file():
        return path
    log.info("Downloading ImageNet ResNet-%d weights from %s into %s", depth, url, path.parent)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        prefix = torch.hub.HASH_REGEX.search(name).group(1)
        with _socket_timeout(NETWORK_TIMEOUT_S):
            torch.hub.download_url_to_file(url, str(path), hash_prefix=prefix, progress=True)
    except (OSError, RuntimeError) as err:  # URLError and HTTP errors are OSErrors; a bad hash a RuntimeError
        raise WeightsNotFoundError(
            f"ImageNet weights for ResNet-{depth} are not in the torch cache and could not be downloaded "
            f"({_detail(err)}): download {url} into {path.parent}/ (or set backbone.pretrained=/path/to/{name}), "
            "or backbone.pretrained=null for random weights"
        ) from None
    return path


# --- the ResNet trunk of DeepLab-v2 ----------------------------------------------------------------------------


def _load(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a torch or safetensors file, unwrapped from ``state_dict``/``model`` entries."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # files of the legacy (non-zip) format cannot be memory-mapped
        state = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    return state


def _strip(key: str) -> str:
    # DataParallel, the Caffe conversion's wrapper module, an mmseg segmentor's backbone
    return key.removeprefix("module.").removeprefix("Scale.").removeprefix("backbone.")


def detect_format(path: str | Path) -> str:
    """``caffe`` for the Caffe-converted DeepLab file (its ``Scale.`` wrapper, its ``layer5`` classifier or its
    name give it away), ``torchvision`` otherwise."""
    path = Path(path)
    if path.name.startswith("DeepLab_resnet_pretrained"):
        return "caffe"
    keys = [k.removeprefix("module.") for k in _load(path)]
    return "caffe" if any(k.startswith(("Scale.", "layer5.")) for k in keys) else "torchvision"


def _local_file(path: str | Path, hint: str) -> Path:
    path = Path(path).expanduser().absolute()  # the run's config records it; eval may run elsewhere
    if not path.is_file():
        raise WeightsNotFoundError(
            f"ImageNet weights {path} not found: download {hint} and put the file there, "
            "or set backbone.pretrained=null to start from random weights"
        )
    return path


def _where_to_get(fmt: str, depth: int) -> str:
    if fmt == "caffe":
        return f"the Caffe-converted {CAFFE_FILE} that ADVENT/DA-VSN/TPS start from"
    return (
        f"torchvision's ImageNet ResNet-{depth} weights ({TORCHVISION_FILES.get(depth, 'resnet*.pth')} from "
        f"{TORCHVISION_URL})"
    )


def resolve_resnet(
    pretrained: str | None,
    weights_format: str = "auto",
    depth: int = 101,
    weights_dir: str | Path | None = None,
) -> tuple[Path | None, str]:
    """The file and format a DeepLab-v2 trunk starts from.

    ``pretrained``: None (random init), ``imagenet`` (the Caffe file in ``weights_dir`` for ResNet-101 when it is
    there and the format allows it, else torchvision's, fetched into the torch cache) or a local file.
    ``weights_format``: ``torchvision``, ``caffe`` or ``auto`` (the file's own format; torchvision without one).
    """
    if weights_format not in ("auto", *FORMATS):
        raise ConfigError(
            f"backbone.weights_format must be auto, torchvision or caffe, got {weights_format!r}"
        )
    if pretrained is None:
        return None, "torchvision" if weights_format == "auto" else weights_format
    if str(pretrained) == IMAGENET:
        caffe = Path(weights_dir).expanduser() / CAFFE_FILE if weights_dir else None
        if weights_format != "torchvision" and depth == 101 and caffe is not None and caffe.is_file():
            return caffe, "caffe"
        if weights_format == "caffe":  # asked for explicitly: only the Caffe file has that format
            raise WeightsNotFoundError(
                f"backbone.weights_format=caffe with backbone.pretrained=imagenet needs backbone.depth=101 and "
                f"{_where_to_get('caffe', depth)} in {weights_dir or '${paths.data_dir}/weights'}/: put it there, "
                "or set backbone.weights_format=auto for torchvision's ImageNet weights"
            )
        return fetch_torchvision_resnet(depth), "torchvision"
    fmt = weights_format if weights_format != "auto" else None
    path = _local_file(pretrained, _where_to_get(fmt or "torchvision", depth))
    return path, fmt or detect_format(path)


def read_resnet_state_dict(
    path: str | Path, fmt: str = "torchvision", depth: int = 101
) -> dict[str, torch.Tensor]:
    """The trunk's tensors from a torchvision ResNet file or the Caffe-converted DeepLab file, with torchvision
    key names; classifier layers (``fc``, the Caffe file's ``layer5``) are dropped."""
    if fmt not in FORMATS:
        raise ValueError(f"weights format must be 'torchvision' or 'caffe', got {fmt!r}")
    state = _load(_local_file(path, _where_to_get(fmt, depth)))
    return {_strip(k): v for k, v in state.items() if _strip(k).split(".")[0] not in CLASSIFIERS}


def load_matching(module: nn.Module, state: dict[str, torch.Tensor], path: str | Path, what: str) -> None:
    """Load the tensors of ``state`` whose names and shapes fit ``module``; log what is left out. A file of
    which less than half fits is another network's: that raises WeightsFileError."""
    own = module.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = [k for k in own if k not in fitting and not k.endswith("num_batches_tracked")]
    if len(fitting) < len(missing):
        raise WeightsFileError(
            f"weights file {path} does not fit {what}: {len(missing)} of its tensors are missing or of another "
            f"shape there (the first: {missing[0]}), a file for another network?"
        )
    nn.Module.load_state_dict(module, fitting, strict=False)  # nn.Module's: smp encoders override it strictly
    log.info("Loaded %d tensors of ImageNet weights from %s", len(fitting), path)
    if missing:
        log.warning(
            "%d tensors of %s missing from %s (left at random init): %s",
            len(missing),
            what,
            path,
            missing[:8],
        )
    unused = [k for k in state if k not in fitting]
    if unused:
        log.warning("%d tensors of %s not used: %s", len(unused), path, unused[:8])


def load_imagenet_resnet(
    trunk: nn.Module, path: str | Path, fmt: str = "torchvision", depth: int = 101
) -> None:
    """Load a local ImageNet ResNet file into ``trunk``, logging missing and unexpected keys."""
    load_matching(trunk, read_resnet_state_dict(path, fmt, depth), path, f"the ResNet-{depth} trunk")


# --- segmentation-models-pytorch encoders --------------------------------------------------------------------


def smp_imagenet_source(encoder_name: str) -> tuple[str, str]:
    """The Hugging Face repository and revision smp's ``encoder_weights="imagenet"`` downloads from."""
    from segmentation_models_pytorch.encoders import encoders

    settings = encoders.get(encoder_name, {}).get("pretrained_settings", {}).get(IMAGENET)
    if settings is None:
        raise ConfigError(
            f"segmentation-models-pytorch has no ImageNet weights for encoder {encoder_name}: set "
            "backbone.pretrained=/path/to/a/file or null"
        )
    return settings["repo_id"], settings["revision"]


def fetch_smp_encoder(encoder_name: str) -> Path:
    """smp's ImageNet weights of ``encoder_name`` from the Hugging Face cache, downloaded there when missing
    (the files and cache smp's own ``encoder_weights="imagenet"`` uses)."""
    import huggingface_hub
    from huggingface_hub import constants

    repo, revision = smp_imagenet_source(encoder_name)
    cached = huggingface_hub.try_to_load_from_cache(
        repo, SMP_FILE, cache_dir=constants.HF_HUB_CACHE, revision=revision
    )
    if isinstance(cached, str):
        return Path(cached)
    url = huggingface_hub.hf_hub_url(repo, SMP_FILE, revision=revision)
    log.info("Downloading ImageNet %s weights from %s", encoder_name, url)
    try:
        return Path(
            huggingface_hub.hf_hub_download(repo, SMP_FILE, revision=revision, etag_timeout=NETWORK_TIMEOUT_S)
        )
    except Exception as err:  # offline, proxy or HTTP errors, of huggingface_hub's or its HTTP client's types
        raise WeightsNotFoundError(
            f"ImageNet weights for {encoder_name} are not in the Hugging Face cache and could not be downloaded "
            f"({_detail(err)}): download {url} and set backbone.pretrained=/path/to/{SMP_FILE}"
            + (f" (SegFormer's own {encoder_name}.pth loads too)" if encoder_name.startswith("mit_b") else "")
            + ", or backbone.pretrained=null for random weights"
        ) from None


def resolve_smp_encoder(encoder_name: str, pretrained: str | None) -> Path | None:
    """The file an smp encoder starts from: None (random init), ``imagenet`` (smp's weights) or a local file."""
    if pretrained is None:
        return None
    if str(pretrained) == IMAGENET:
        return fetch_smp_encoder(encoder_name)
    return _local_file(pretrained, f"ImageNet weights of {encoder_name}")


def read_encoder_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """An encoder's tensors from smp's files, torchvision ResNet files or SegFormer's (NVlabs) ``mit_b*.pth``,
    whose key names are smp's (smp copied NVIDIA's MiT code); classifiers and a segmentor's decode head go."""
    state = _load(Path(path))
    if any(k.startswith("backbone.") for k in state):  # a whole mmseg segmentor: its backbone only
        state = {k: v for k, v in state.items() if k.startswith("backbone.")}
    return {_strip(k): v for k, v in state.items() if _strip(k).split(".")[0] not in CLASSIFIERS}


def load_smp_encoder(encoder: nn.Module, path: str | Path, encoder_name: str) -> None:
    load_matching(encoder, read_encoder_state_dict(path), path, f"encoder {encoder_name}")


# --- the run's config ----------------------------------------------------------------------------------------


def _start_backbone(cfg: DictConfig) -> dict | None:
    """The backbone config of the run this one continues (``ckpt_path``) or starts from (``model.init_from``);
    None for a fresh run, or when that checkpoint cannot be read (train reports that itself)."""
    from dastc.checkpoint import resolve_ckpt_path

    ckpt, init = cfg.get("ckpt_path"), (cfg.get("model") or {}).get("init_from")
    if not ckpt and not init:
        return None
    try:  # memory-mapped: only the config is read here
        path = resolve_ckpt_path(ckpt, cfg.paths.output_dir) if ckpt else resolve_ckpt_path(str(init), ".")
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        return dict(checkpoint["dastc_config"]["backbone"])
    except Exception:  # e.g. a two-stage run directory as ckpt_path: its stages resolve their own
        return None


def resolve_pretrained(cfg: DictConfig) -> None:
    """Replace ``backbone.pretrained=imagenet`` by the file it means, fetching it now, and
    ``backbone.weights_format=auto`` by ``caffe`` when that file is the Caffe one, so that the run's config names
    what it started from. Called at the start of training: it fails in seconds, before data is read, when the
    weights can be neither found nor downloaded. A resumed run or one with ``model.init_from`` starts from that
    checkpoint's weights: nothing is fetched, and ``auto`` takes that run's format."""
    backbone = cfg.get("backbone")
    if backbone is None or "pretrained" not in backbone:
        return
    start = _start_backbone(cfg)
    if start is not None:
        if "weights_format" in backbone and backbone.weights_format == "auto":
            backbone.weights_format = start.get("weights_format", "auto")
        if backbone.pretrained == IMAGENET:
            backbone.pretrained = None
        return
    if "weights_format" in backbone:  # DeepLab-v2 (backbone=accel)
        weights_dir = Path(cfg.paths.data_dir) / "weights"
        path, fmt = resolve_resnet(backbone.pretrained, backbone.weights_format, backbone.depth, weights_dir)
        backbone.pretrained = None if path is None else str(path)
        if fmt == "caffe":  # "auto" stays for torchvision's: a network rebuilt without weights is that
            backbone.weights_format = fmt
    elif "encoder_name" in backbone:  # segmentation-models-pytorch
        path = resolve_smp_encoder(backbone.encoder_name, backbone.pretrained)
        backbone.pretrained = None if path is None else str(path)
    if backbone.pretrained is not None:
        log.info("The network starts from %s", backbone.pretrained)
