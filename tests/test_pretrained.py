"""ImageNet start weights: local files, the libraries' caches, the Caffe file's preference, failing fast offline.

Nothing here downloads: every download function is replaced by one that fails the test."""

import time
import urllib.error
from pathlib import Path

import huggingface_hub
import pytest
import torch
import torchvision
from huggingface_hub import constants as hf_constants
from hydra.utils import instantiate
from safetensors.torch import save_file
from segmentation_models_pytorch.encoders import get_encoder

from dastc.cli import user_errors
from dastc.config import compose_config
from dastc.models import weights
from dastc.models.deeplabv2 import DeepLabV2
from dastc.models.smp_segmenter import SmpSegmenter
from dastc.models.weights import (
    CAFFE_FILE,
    TORCHVISION_FILES,
    WeightsFileError,
    WeightsNotFoundError,
    resolve_pretrained,
)

REAL = ["synthia", "viper", "gta5", "synthia_image"]


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """Empty torch and Hugging Face caches under tmp_path, and downloads that fail as they do offline."""
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "torch_hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf_hub"))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)
    return calls


def _resnet18_file(path: Path, prefix: str = "") -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    state = {f"{prefix}{k}": v for k, v in torchvision.models.resnet18().state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


@pytest.fixture(scope="module")
def mit_b0_state() -> dict[str, torch.Tensor]:
    """A MiT-B0 state dict as SegFormer's release ships ``mit_b*.pth``: NVIDIA's key names and the ImageNet
    classifier ``head``."""
    torch.manual_seed(0)
    state = dict(get_encoder("mit_b0").state_dict())
    state["head.weight"], state["head.bias"] = torch.randn(1000, 256), torch.randn(1000)
    return state


def _assert_loaded(module: torch.nn.Module, state: dict[str, torch.Tensor], prefix: str = "") -> None:
    own = module.state_dict()
    checked = [k for k in state if k.removeprefix(prefix) in own]
    assert len(checked) > 10
    for key in checked:
        assert torch.equal(own[key.removeprefix(prefix)], state[key]), key


# --- the config defaults --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dataset,backbone",
    [(d, "accel") for d in ["toy", *REAL]]
    + [(d, b) for d in ("toy", "gta5") for b in ("deeplabv3plus", "segformer", "smp_unet")],
)
def test_real_benchmarks_start_from_imagenet_and_the_toy_one_from_random_weights(dataset, backbone):
    cfg = compose_config("train", [f"dataset={dataset}", f"backbone={backbone}"])
    imagenet = dataset != "toy" and backbone != "smp_unet"  # the U-Net's group norm takes no ImageNet weights
    assert cfg.backbone.pretrained == ("imagenet" if imagenet else None)
    if backbone == "accel":
        assert cfg.backbone.weights_format == "auto"


def test_the_torchvision_file_names_are_torchvisions():
    for depth, name in TORCHVISION_FILES.items():
        url = getattr(torchvision.models, f"ResNet{depth}_Weights").IMAGENET1K_V1.url
        assert url == weights.TORCHVISION_URL + name


# --- (a) local files ---------------------------------------------------------------------------------------


def test_a_local_torchvision_file_loads_and_auto_reads_its_format(tmp_path, offline):
    state = _resnet18_file(tmp_path / "any_name.pth")
    net = DeepLabV2(4, depth=18, pretrained=str(tmp_path / "any_name.pth"))
    _assert_loaded(net.trunk, state)
    assert net.weights_format == "torchvision" and net.input_norm.style == "torchvision"
    assert not offline


def test_a_local_caffe_file_switches_the_format(tmp_path, offline):
    state = _resnet18_file(tmp_path / "converted.pth", prefix="Scale.")
    state["Scale.layer5.conv2d_list.0.weight"] = torch.zeros(21, 512, 3, 3)
    torch.save(state, tmp_path / "converted.pth")  # named otherwise: its keys tell the format
    net = DeepLabV2(4, depth=18, pretrained=str(tmp_path / "converted.pth"))
    _assert_loaded(net.trunk, state, prefix="Scale.")
    assert net.weights_format == "caffe" and net.input_norm.style == "caffe"  # the strides follow it too


def test_a_file_for_another_network_is_one_clear_sentence(tmp_path):
    _resnet18_file(tmp_path / "resnet18.pth")
    with pytest.raises(WeightsFileError) as info:
        DeepLabV2(4, depth=50, pretrained=str(tmp_path / "resnet18.pth"))
    message = str(info.value)
    assert "resnet18.pth does not fit the ResNet-50 trunk" in message and "\n" not in message


def test_segformers_own_mit_file_loads_into_smps_encoder(tmp_path, offline, mit_b0_state):
    state = mit_b0_state
    # NVIDIA's names, as the release ships them (smp copied NVIDIA's MiT code, so they are smp's too)
    assert {"patch_embed1.proj.weight", "block1.0.attn.q.weight", "block1.0.attn.kv.weight"} <= set(state)
    encoder = {k: v for k, v in state.items() if not k.startswith("head.")}
    mmseg = {**{f"backbone.{k}": v for k, v in state.items()}, "decode_head.conv_seg.weight": torch.ones(1)}
    for name, stored in {"mmseg.pth": {"state_dict": mmseg}, "wrapped.pth": {"state_dict": state}}.items():
        torch.save(
            stored, tmp_path / name
        )  # a segmentor's checkpoint, a wrapped state dict: the encoder's part
        read = weights.read_encoder_state_dict(tmp_path / name)
        assert read.keys() == encoder.keys() and all(torch.equal(read[k], v) for k, v in encoder.items())
    torch.save(state, tmp_path / "mit_b0.pth")
    net = SmpSegmenter(4, arch="Segformer", encoder_name="mit_b0", pretrained=str(tmp_path / "mit_b0.pth"))
    _assert_loaded(net.net.encoder, encoder)
    assert not offline


def test_a_torchvision_resnet_file_loads_into_an_smp_resnet_encoder(tmp_path, offline):
    state = _resnet18_file(tmp_path / "resnet18-f37072fd.pth")
    net = SmpSegmenter(
        4, arch="DeepLabV3Plus", encoder_name="resnet18", pretrained=str(tmp_path / "resnet18-f37072fd.pth")
    )
    _assert_loaded(net.net.encoder, {k: v for k, v in state.items() if not k.startswith("fc.")})


# --- (b) the libraries' caches -----------------------------------------------------------------------------


def test_imagenet_loads_torchvisions_file_from_the_torch_cache_without_network(tmp_path, offline):
    state = _resnet18_file(tmp_path / "torch_hub" / "checkpoints" / TORCHVISION_FILES[18])
    net = DeepLabV2(4, depth=18, pretrained="imagenet")
    _assert_loaded(net.trunk, state)
    assert net.weights_format == "torchvision" and not offline


def test_imagenet_loads_smps_file_from_the_hugging_face_cache_without_network(
    tmp_path, offline, mit_b0_state
):
    repo, revision = weights.smp_imagenet_source("mit_b0")
    snapshot = tmp_path / "hf_hub" / f"models--{repo.replace('/', '--')}" / "snapshots" / revision
    snapshot.mkdir(parents=True)
    state = {k: v for k, v in mit_b0_state.items() if not k.startswith("head.")}
    save_file({k: v.contiguous() for k, v in state.items()}, str(snapshot / "model.safetensors"))
    net = SmpSegmenter(4, arch="Segformer", encoder_name="mit_b0", pretrained="imagenet")
    _assert_loaded(net.net.encoder, state)
    assert not offline


# --- (c) the peers' Caffe file ------------------------------------------------------------------------------


def test_the_caffe_file_in_the_data_dir_is_preferred_and_sets_the_format(tmp_path, offline):
    (tmp_path / "data" / "weights").mkdir(parents=True)
    (tmp_path / "data" / "weights" / CAFFE_FILE).write_bytes(b"")  # resolving only looks for it
    cfg = compose_config(
        "train", ["dataset=synthia", "backbone=accel", f"paths.data_dir={tmp_path / 'data'}"]
    )
    resolve_pretrained(cfg)
    assert cfg.backbone.pretrained == str(tmp_path / "data" / "weights" / CAFFE_FILE)
    assert cfg.backbone.weights_format == "caffe" and not offline  # the run's config names what it used
    for override in ("backbone.depth=18", "backbone.weights_format=torchvision"):  # it is a ResNet-101 file
        cfg = compose_config(
            "train", ["dataset=synthia", "backbone=accel", f"paths.data_dir={tmp_path / 'data'}", override]
        )
        with pytest.raises(WeightsNotFoundError, match="torch cache"):
            resolve_pretrained(cfg)


def test_imagenet_without_the_caffe_file_is_torchvisions_and_keeps_auto(tmp_path, offline):
    path = tmp_path / "torch_hub" / "checkpoints" / TORCHVISION_FILES[18]
    _resnet18_file(path)
    cfg = compose_config(
        "train", ["dataset=synthia", "backbone=accel", "backbone.depth=18", f"paths.data_dir={tmp_path}"]
    )
    resolve_pretrained(cfg)
    assert cfg.backbone.pretrained == str(path) and cfg.backbone.weights_format == "auto"
    assert instantiate(cfg.backbone).frame_net.weights_format == "torchvision"


def test_a_run_started_from_a_checkpoint_takes_its_format_and_fetches_nothing(tmp_path, offline):
    stage1 = tmp_path / "stage1.ckpt"
    torch.save({"state_dict": {}, "dastc_config": {"backbone": {"weights_format": "caffe"}}}, stage1)
    cfg = compose_config(
        "train",
        ["experiment=synthia2city_dastc", f"model.init_from={stage1}", "backbone.pretrained=imagenet"],
    )
    resolve_pretrained(cfg)
    assert cfg.backbone.weights_format == "caffe" and cfg.backbone.pretrained is None and not offline


# --- (d) offline with nothing on disk -----------------------------------------------------------------------


def test_offline_without_weights_training_stops_at_once_naming_file_url_and_place(tmp_path, offline, capsys):
    cfg = compose_config(
        "train",
        ["dataset=synthia", "backbone=accel", f"paths.data_dir={tmp_path / 'no_data'}"],
        output_dir=tmp_path / "run",
    )
    from dastc.train import train

    start = time.perf_counter()
    with pytest.raises(SystemExit) as exit_info, user_errors():
        train(cfg)
    assert time.perf_counter() - start < 10 and exit_info.value.code == 2
    (error,) = capsys.readouterr().err.strip().splitlines()
    assert error.startswith("error: ImageNet weights for ResNet-101 are not in the torch cache")
    url = "https://download.pytorch.org/models/resnet101-63fe2227.pth"
    assert url in error and f"into {tmp_path / 'torch_hub' / 'checkpoints'}/" in error
    assert "backbone.pretrained=null" in error and ". " not in error  # one sentence
    assert len(offline) == 1 and not (tmp_path / "no_data").exists()  # failed before any data was looked at


def test_offline_without_smp_weights_names_the_hugging_face_url(tmp_path, offline):
    cfg = compose_config("train", ["dataset=gta5", "backbone=segformer", f"paths.data_dir={tmp_path}"])
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_pretrained(cfg)
    message = str(info.value)
    repo, revision = weights.smp_imagenet_source("mit_b5")
    assert f"https://huggingface.co/{repo}/resolve/{revision}/model.safetensors" in message
    assert "mit_b5.pth loads too" in message and "backbone.pretrained=null" in message and ". " not in message


# --- (e) the toy default --------------------------------------------------------------------------------------


@pytest.mark.parametrize("backbone", [[], ["backbone=accel", "backbone.depth=18"]])
def test_the_toy_benchmark_starts_from_random_weights_and_downloads_nothing(tmp_path, offline, backbone):
    cfg = compose_config("train", [f"paths.data_dir={tmp_path}", *backbone])
    resolve_pretrained(cfg)
    assert cfg.backbone.pretrained is None
    instantiate(cfg.backbone)
    assert not offline
