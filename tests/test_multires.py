"""Multi-resolution training and inference (HRDA, dastc.models.multires): the fusion, the sliding windows, the
window's labels, the two paths, devices, the config group, and training/evaluation through the command line.
Expected values are worked out by hand in each test."""

from __future__ import annotations

import json
import math
import os
import shutil
import sys

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from real_fixtures import SYNTHIA_TINY, write_synthia_benchmark
from test_entry_points import run
from torch import nn
from torch.overrides import TorchFunctionMode

from dastc.checkpoint import backbone_difference, describe_model
from dastc.config import compose_config
from dastc.errors import ConfigError
from dastc.methods.fusion import blend_features
from dastc.methods.losses import segmentation_loss, window_labels
from dastc.models.multires import MultiResolution, slide_positions, window
from dastc.models.output import DetailCrop, SegmentationOutput
from dastc.models.video import ACCEL, SingleFrame
from dastc.predict import predict
from dastc.schema import validate_config


class Stub(nn.Module):
    """A frame network split nowhere (shallow state = the image) whose outputs the test sets: ``outputs(s)``
    gives (logits, features) for a shallow state ``s``; ``seen`` records the shapes it was run on."""

    def __init__(self, outputs, num_classes: int = 2):
        super().__init__()
        self.outputs, self.num_classes, self.seen = outputs, num_classes, []
        self.dummy = nn.Parameter(torch.zeros(()))  # a network has parameters (MultiResolution probes them)

    def encode_shallow(self, x):
        return [x]

    def forward_from_shallow(self, shallow):
        self.seen.append(tuple(shallow[0].shape))
        logits, features = self.outputs(shallow[0])
        return SegmentationOutput(logits=logits, features=features, shallow=shallow)

    def forward(self, x):
        return self.forward_from_shallow(self.encode_shallow(x))

    def param_groups(self):
        return {"backbone": [self.dummy], "head": []}


def set_attention(net: MultiResolution, weight: list[float], bias: list[float]) -> None:
    """A 1-channel hidden layer passing its (1-channel) input through ReLU, then a_c = sigmoid(w_c h + b_c)."""
    with torch.no_grad():
        net.attention.embed.weight.fill_(1.0)
        net.attention.embed.bias.zero_()
        net.attention.classifier.weight.copy_(torch.tensor(weight).view(-1, 1, 1, 1))
        net.attention.classifier.bias.copy_(torch.tensor(bias))


def sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


# --- the fusion ---------------------------------------------------------------------------------------------------
# Context logits on a 2x2 grid (the context pass sees the 8x8 input at 1/4), detail logits on a 4x4 window.
CONTEXT = torch.tensor([[[0.0, 1.0], [2.0, 3.0]], [[5.0, 1.0], [-1.0, 4.0]]])  # [class, row, col]
DETAIL = torch.arange(32, dtype=torch.float32).view(2, 4, 4) / 4 - 3


def known_outputs(s):
    """2x2 input: the context pass; anything else: a 4x4 detail window. Features 0.5 everywhere."""
    n = s.shape[0]
    logits = CONTEXT if s.shape[-2:] == (2, 2) else DETAIL
    return logits.expand(n, -1, -1, -1), s.new_full((n, 1, *logits.shape[-2:]), 0.5)


def test_the_attention_fuses_context_and_detail_inside_the_window_and_leaves_the_context_outside():
    net = MultiResolution(
        Stub(known_outputs), context_scale=0.25, detail_fraction=0.5, context_multiple=1, detail_multiple=1,
        attention_channels=1,
    )  # fmt: skip
    set_attention(net, weight=[1.0, 2.0], bias=[0.0, -1.0])
    a = [sigmoid(0.5), sigmoid(2 * 0.5 - 1.0)]  # per class, from features 0.5
    torch.manual_seed(3)
    out = net.train()(torch.rand(1, 3, 8, 8))
    assert out.logits.shape == (1, 2, 8, 8)  # the detail pass's pitch (1 cell per pixel) over the input
    top, left = round(out.detail.span[0] * 7), round(out.detail.span[2] * 7)
    assert out.detail.span == pytest.approx((top / 7, (top + 3) / 7, left / 7, (left + 3) / 7))
    for c in range(2):
        for i in range(8):
            for j in range(8):
                u, v = i / 7, j / 7  # corner-aligned: the 2x2 context map's cells sit at the input's corners
                p, q, r, s = CONTEXT[c].flatten().tolist()
                context = p * (1 - u) * (1 - v) + q * (1 - u) * v + r * u * (1 - v) + s * u * v
                inside = top <= i < top + 4 and left <= j < left + 4
                want = (
                    (1 - a[c]) * context + a[c] * DETAIL[c, i - top, j - left].item() if inside else context
                )
                assert out.logits[0, c, i, j].item() == pytest.approx(want, abs=1e-5), (c, i, j)
    assert torch.equal(out.detail.output.logits[0], DETAIL) and out.detail.weight == 0.1


def test_the_training_window_comes_from_the_global_cpu_stream_and_moves():
    net = MultiResolution(
        Stub(known_outputs), context_scale=0.25, context_multiple=1, detail_multiple=1
    ).train()
    x = torch.rand(1, 3, 8, 8)
    spans = []
    for seed in range(6):
        torch.manual_seed(seed)
        first = net(x).detail.span
        torch.manual_seed(seed)
        assert net(x).detail.span == first  # the same global state, the same window (exact resumes)
        spans.append(first)
    assert len(set(spans)) > 1


# --- sliding windows ----------------------------------------------------------------------------------------------
def full_attention(net: MultiResolution) -> MultiResolution:
    """Attention 1 (sigmoid(+inf)): the fused output is the averaged detail windows wherever they lie."""
    set_attention(net, weight=[0.0] * net.num_classes, bias=[1e4] * net.num_classes)
    return net


def test_sliding_windows_of_a_translation_equivariant_network_give_its_whole_image_output():
    conv = nn.Conv2d(3, 4, 1)
    stub = Stub(lambda s: (conv(s), s[:, :1]), num_classes=4)
    net = full_attention(MultiResolution(stub, attention_channels=1, context_multiple=1, detail_multiple=1))
    x = torch.rand(2, 3, 12, 20)
    with torch.no_grad():
        out = net.eval()(x)
        whole = conv(x)
    # windows 6x10, every 3 rows and 5 columns: 3 x 3 of them, in one batch after the context pass
    assert stub.seen[-1] == (2 * 9, 3, 6, 10) and stub.seen[-2] == (2, 3, 6, 10)
    assert out.detail is None and torch.allclose(out.logits, whole, atol=1e-6)


def position_in_window(s):
    """Channel 0: each cell's column inside the window it is in; channel 1: its row (not equivariant)."""
    n, _, h, w = s.shape
    cols = torch.arange(w, device=s.device, dtype=s.dtype).expand(n, h, w)
    rows = torch.arange(h, device=s.device, dtype=s.dtype)[:, None].expand(n, h, w)
    return torch.stack((cols, rows), 1), s[:, :1]


def test_overlapping_windows_are_averaged():
    net = full_attention(
        MultiResolution(
            Stub(position_in_window),
            detail_fraction=2 / 3,
            attention_channels=1,
            context_multiple=1,
            detail_multiple=1,
        )  # fmt: skip
    )
    assert slide_positions(6, 4, 2) == [0, 2]  # windows of 4 on 6 cells, every 2
    out = net.eval()(torch.rand(1, 3, 6, 6))
    # column 2 lies at 2 in the first window, 0 in the second: (2 + 0) / 2; column 3: (3 + 1) / 2; ...
    by_hand = torch.tensor([0.0, 1.0, 1.0, 2.0, 2.0, 3.0])
    assert torch.allclose(out.logits[0, 0], by_hand.expand(6, 6), atol=1e-6)
    assert torch.allclose(out.logits[0, 1], by_hand[:, None].expand(6, 6), atol=1e-6)


# --- the window on each grid --------------------------------------------------------------------------------------
def test_a_window_cuts_every_shallow_map_and_spans_the_finest_ones_cells():
    single = [torch.zeros(1, 1, 8, 8)]
    assert window(single, (2, 1), (4, 4)).span == pytest.approx((2 / 7, 5 / 7, 1 / 7, 4 / 7))
    # An smp-like state: the input (8x8), stride 2 (4x4) and stride 4 (2x2): the window lies on the 2x2 map.
    nested = [torch.zeros(1, 3, 8, 8), torch.zeros(1, 4, 4, 4), torch.zeros(1, 5, 2, 2)]
    w = window(nested, (1, 0), (1, 1))
    assert w.slices == ((4, 8, 0, 4), (2, 4, 0, 2), (1, 2, 0, 1))
    assert w.span == pytest.approx((4 / 7, 1.0, 0.0, 3 / 7))  # input rows 4..7, columns 0..3


def test_the_windows_labels_are_those_inside_it_on_the_labels_own_grid():
    # A window over input rows 2..5 of 8 (span 2/7..5/7) and every column; labels twice as fine (15 rows):
    # label row r lies at r/14, so rows 4..10 are inside, at window rows 0, 0.5, 1, ..., 3.
    logits = torch.tensor([0.0, 10.0, 20.0, 30.0]).view(1, 1, 4, 1).expand(1, 1, 4, 3)
    labels = torch.arange(15 * 5).view(1, 15, 5)
    sampled, inside = window_labels(logits, labels, (2 / 7, 5 / 7, 0.0, 1.0))
    assert torch.equal(inside, labels[:, 4:11, :])
    by_hand = torch.tensor([0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0])
    assert torch.allclose(sampled[0, 0], by_hand[:, None].expand(7, 5), atol=1e-5)


def test_the_detail_loss_is_hrdas_share_of_the_windows_cross_entropy():
    # Fused logits all 0 (CE ln 2 per pixel). The window covers input columns 0..1 of 4 (span 0..1/3) and its
    # single row every row; labels 3 x 7, class 0: columns 0..2 (at 0, 1/6, 2/6) are inside, where the
    # window's class-0 logit is 2, 1 (half way) and 0, its class-1 logit 0.
    window_logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 0.0]]]])
    detail = DetailCrop(SegmentationOutput(logits=window_logits), (0.0, 1.0, 0.0, 1 / 3), weight=0.1)
    out = SegmentationOutput(logits=torch.zeros(1, 2, 4, 4), detail=detail)
    labels = torch.zeros(1, 3, 7, dtype=torch.long)
    window_ce = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1)) + math.log(2)) / 3
    want = 0.9 * math.log(2) + 0.1 * window_ce
    assert segmentation_loss(out, labels).item() == pytest.approx(want, rel=1e-6)


def test_sizes_round_to_the_multiples_the_networks_need():
    net = MultiResolution(Stub(known_outputs))  # context_multiple 8, detail_multiple 8
    assert net.context_size(64, 128) == (32, 64) and net.context_size(36, 100) == (
        16,
        48,
    )  # 18 -> 16, 50 -> 48
    assert net.context_size(4, 6) == (4, 6)  # never above the input
    # windows in cells of the coarsest shallow map: DeepLab-v2's 129 x 257 at 512 x 1024 -> 64 x 128
    assert (net.window_side(129), net.window_side(257), net.window_side(17), net.window_side(5)) == (
        64,
        128,
        8,
        5,
    )


def test_feature_mixing_mixes_both_resolutions_of_whole_frames():
    # Mixing everything with weight 1 gives the other clip's state: the output is the other clip's, window
    # and all (same random state), which holds only if every tensor of the state covers the whole frame.
    cfg = compose_config("train", ["multires=hrda", "backbone.temporal=flow_fusion"])
    net = instantiate(cfg.backbone).train()
    own, other = torch.rand(2, 2, 3, 64, 128), torch.rand(2, 2, 3, 64, 128)
    flow = torch.zeros(2, 1, 2, 64, 128)
    everywhere = torch.ones(2, 2, 64, 128, dtype=torch.bool)
    mixed = [
        blend_features(a, b, everywhere, 1.0)
        for a, b in zip(net.encode_shallow(own), net.encode_shallow(other), strict=True)
    ]
    assert (
        len(mixed) == 6
    )  # the U-Net's input, stride 2 and stride 4 maps: context pass, then full resolution
    torch.manual_seed(0)
    from_mixed = net(own, flow, shallow=mixed)
    torch.manual_seed(0)
    direct = net(other, flow)
    assert torch.allclose(from_mixed.logits, direct.logits, atol=1e-4)  # own + (other - own): rounding
    assert from_mixed.detail.span == direct.detail.span


# --- the two paths, inside the video networks, on any device ------------------------------------------------------
@pytest.mark.parametrize("video", [SingleFrame, ACCEL])
def test_train_mode_runs_one_window_and_eval_mode_slides(video):
    stub = Stub(position_in_window)
    net = video(MultiResolution(stub, context_multiple=1, detail_multiple=1))
    frames, flow = torch.rand(2, 2, 3, 8, 8), torch.zeros(2, 1, 2, 8, 8)
    out = net.train()(frames, flow)
    assert stub.seen[-2:] == [(2, 3, 4, 4), (2, 3, 4, 4)]  # context (8 x 0.5), then one 4x4 window per clip
    assert out.detail is not None and out.detail.output.logits.shape == (2, 2, 4, 4)  # carried through ACCEL
    stub.seen.clear()
    out = net.eval()(frames, flow)
    assert stub.seen[-2:] == [(2, 3, 4, 4), (2 * 9, 3, 4, 4)]  # windows at 0, 2, 4 in both directions
    assert out.detail is None and out.logits.shape == (2, 2, 8, 8)
    torch.manual_seed(5)
    direct = net.frame_net.train()(frames[:, -1])
    torch.manual_seed(5)
    split = net.frame_net.forward_from_shallow(net.frame_net.encode_shallow(frames[:, -1]))
    assert torch.equal(direct.logits, split.logits)  # forward == forward_from_shallow(encode_shallow)


# torch's tensor factories: a call from dastc code without ``device=`` makes a CPU tensor, wrong on a GPU.
FACTORIES = {
    torch.zeros, torch.ones, torch.full, torch.empty, torch.arange, torch.linspace, torch.eye, torch.tensor,
    torch.as_tensor, torch.rand, torch.randn, torch.randint, torch.randperm,
}  # fmt: skip


class DevicelessFactories(TorchFunctionMode):
    """Records every tensor factory call made from dastc's code (``where``) and those without a device
    (``deviceless``); ``x.new_zeros(...)``, ``torch.zeros_like(x)`` and the like take the data's device."""

    def __init__(self):
        super().__init__()
        self.where, self.deviceless = [], []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        caller = sys._getframe(1).f_code
        if func in FACTORIES and f"{os.sep}dastc{os.sep}" in caller.co_filename:
            self.where.append(caller.co_name)
            if kwargs.get("device") is None:
                self.deviceless.append(f"{caller.co_filename}:{caller.co_name}: torch.{func.__name__}")
        return func(*args, **kwargs)


@pytest.mark.parametrize("backbone", ["smp_unet", "accel"])
def test_no_tensor_is_made_without_the_datas_device(backbone):
    # Both paths, both kinds of backbone, and the loss with its window's labels.
    overrides = ["multires=hrda", f"backbone={backbone}", "backbone.pretrained=null"]
    overrides += ["backbone.depth=18"] if backbone == "accel" else []
    net = instantiate(compose_config("train", overrides).backbone)
    frames, flow = torch.rand(2, 2, 3, 64, 128), torch.zeros(2, 1, 2, 64, 128)
    labels = torch.zeros(2, 64, 128, dtype=torch.long)
    with DevicelessFactories() as factories:
        for training in (True, False):
            out = net.train(training)(frames, flow)
            assert (out.detail is not None) == training
            segmentation_loss(out, labels)
    assert "_interpolation" in factories.where and "random_window" in factories.where  # the mode sees them
    assert factories.deviceless == []


# --- config -------------------------------------------------------------------------------------------------------
def test_the_group_is_off_by_default_and_hrda_wraps_the_frame_network(make_cfg):
    cfg = make_cfg()
    assert cfg.multires is None and not isinstance(instantiate(cfg.backbone).frame_net, MultiResolution)
    cfg = make_cfg("multires=hrda", "backbone=accel", "backbone.depth=18", "backbone.pretrained=null")
    validate_config(cfg)
    net = instantiate(cfg.backbone)
    assert isinstance(net, ACCEL) and isinstance(net.frame_net, MultiResolution)
    assert (net.frame_net.context_scale, net.frame_net.detail_fraction) == (0.5, 0.5)
    assert (net.frame_net.detail_loss_weight, net.frame_net.sliding_stride) == (0.1, 0.5)
    assert net.frame_net.attention.classifier.out_channels == cfg.dataset.num_classes  # one map per class
    heads = {id(p) for p in net.param_groups()["head"]}
    assert all(id(p) in heads for p in net.frame_net.attention.parameters())


@pytest.mark.parametrize(
    "override,message",
    [
        ("multires.context_scale=0", "multires.context_scale must be a number > 0 and <= 1"),
        ("multires.sliding_stride=1.5", "multires.sliding_stride must be a number > 0 and <= 1"),
        ("multires.detail_loss_weight=-0.1", "multires.detail_loss_weight must be a number from 0 to 1"),
        ("multires.detail_multiple=0", "multires.detail_multiple must be an integer >= 1"),
    ],
)
def test_bad_values_are_one_sentence_naming_the_key(make_cfg, override, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(make_cfg("multires=hrda", override))


def test_a_multires_checkpoint_is_another_network_than_a_single_resolution_one(make_cfg):
    plain = describe_model(make_cfg())
    multires = describe_model(make_cfg("multires=hrda"))
    assert "multires: {" in backbone_difference(multires["backbone"], plain["backbone"])
    assert backbone_difference(plain["backbone"], describe_model(make_cfg())["backbone"]) == ""


# --- training and evaluation through the command line -------------------------------------------------------------
TINY = [
    "multires=hrda",
    "dataset.batch_size=2",
    "dataset.val_batch_size=8",
    "dataset.num_workers=0",
    "trainer.limit_val_batches=1",
    "trainer.log_every_n_steps=1",
    "callbacks=none",
]


def train_losses(out) -> dict[str, list[float]]:
    """The logged ``train/*`` losses of a run, per term, over its steps."""
    lines = (out / "csv" / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    rows = [dict(zip(header, line.split(","), strict=True)) for line in lines[1:]]
    return {k: [float(r[k]) for r in rows if r[k]] for k in header if k.startswith("train/")}


def test_source_only_trains_through_the_command_line(data_dir, tmp_path):
    out = tmp_path / "run"
    args = [f"paths.data_dir={data_dir}", f"paths.output_dir={out}", "method=source_only"]
    run("dastc.train", *args, "trainer.max_steps=2", *TINY, cwd=tmp_path)
    losses = train_losses(out)
    assert len(losses["train/source_ce"]) == 2 and np.isfinite(losses["train/loss"]).all()


def test_dastc_trains_every_term_then_evaluates_and_predicts_the_same(data_dir, tmp_path):
    out = tmp_path / "run"
    args = [f"paths.data_dir={data_dir}", f"paths.output_dir={out}", "method=dastc", "trainer.max_steps=2"]
    # one source-only step, then every DA-STC term (feature-level mixing included) in the second
    schedule = ["dataset.schedule.warmup_steps=1", "dataset.schedule.feature_fusion_start=0"]
    run("dastc.train", *args, *schedule, *TINY, cwd=tmp_path)
    losses = train_losses(out)
    for term in ("source_ce", "target_ce", "mix_s2t_ce", "mix_t2s_ce", "feat_s2t_ce", "feat_t2s_ce", "align"):
        assert np.isfinite(losses[f"train/{term}"]).all() and losses[f"train/{term}"], term
    trained = json.loads((out / "metrics.json").read_text())
    # The run's multires group comes back from the checkpoint: the same scores, and prediction runs.
    ckpt = out / "checkpoints" / "last.ckpt"
    run(
        "dastc.eval",
        f"ckpt_path={ckpt}",
        f"paths.data_dir={data_dir}",
        "+trainer.limit_val_batches=1",
        cwd=tmp_path,
    )
    (eval_dir,) = (out / "eval").iterdir()
    assert json.loads((eval_dir / "metrics.json").read_text())["metrics"] == trained["metrics"]
    frames = tmp_path / "frames"
    frames.mkdir()
    for path in sorted((data_dir / "toy/target/val/000/frames").iterdir())[:2]:
        shutil.copy(path, frames / path.name)
    summary = predict(compose_config("predict", [f"ckpt_path={ckpt}", f"input={frames}"], tmp_path / "pred"))
    assert summary["frames"] == 2


def test_dastc_trains_on_a_synthia_seq_fixture_with_deeplab(tmp_path):
    data_dir = write_synthia_benchmark(tmp_path / "data")
    out = tmp_path / "run"
    run(
        "dastc.train",
        "dataset=synthia",
        "backbone=accel",
        "backbone.depth=18",
        "backbone.pretrained=null",
        "dataset.schedule.two_stage=false",  # DA-STC alone (the recipe's TPS stage is the same network)
        "dataset.schedule.feature_fusion_start=0",
        f"paths.data_dir={data_dir}",
        f"paths.output_dir={out}",
        "trainer.max_steps=1",  # one step: every DA-STC term
        *SYNTHIA_TINY,
        *TINY,
        cwd=tmp_path,
    )
    losses = train_losses(out)
    for term in ("loss", "source_ce", "target_ce", "mix_s2t_ce", "feat_s2t_ce", "feat_t2s_ce", "align"):
        assert len(losses[f"train/{term}"]) == 1 and np.isfinite(losses[f"train/{term}"]).all(), term
    assert np.isfinite(json.loads((out / "metrics.json").read_text())["metrics"]["target"]["mIoU"])
