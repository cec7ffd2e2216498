"""Masked image consistency (MIC, Hoyer et al., CVPR 2023), the option of TPS and DA-STC: the patch mask, the
masking colour, the pseudo-label quality weight, the loss on hand-made inputs, when the term exists, and short
trainings through the command line on the toy benchmark and the SYNTHIA-Seq fixture."""

import csv
import math
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from real_fixtures import SYNTHIA_TINY, write_synthia_benchmark
from torch import nn

from dastc.build import build_datamodule, build_method
from dastc.config import compose_config
from dastc.errors import ConfigError
from dastc.methods.masking import MICConfig, mask_clips, normalised_zero, patch_mask, pseudo_label_quality
from dastc.methods.pseudo_labels import PseudoLabels
from dastc.methods.tps import TPS
from dastc.models.input_norm import InputNorm
from dastc.models.output import SegmentationOutput
from dastc.schema import validate_config


# --- the mask ----------------------------------------------------------------------------------------------
def _cells(mask: torch.Tensor, size: int) -> list[torch.Tensor]:
    """Every cell of a [H, W] mask on a grid of ``size`` px from the top-left corner, edge cells partial."""
    height, width = mask.shape
    return [mask[y : y + size, x : x + size] for y in range(0, height, size) for x in range(0, width, size)]


def test_the_mask_is_one_value_per_patch_cell_edge_cells_partial():
    generator = torch.Generator().manual_seed(0)
    mask = patch_mask(3, 20, 28, 8, 0.5, generator=generator)  # 3 x 4 cells, the last row and column partial
    assert mask.shape == (3, 1, 20, 28) and mask.dtype == torch.bool
    for clip in mask[:, 0]:
        cells = _cells(clip, 8)
        assert len(cells) == 12 and cells[-1].shape == (4, 4)  # 20 = 8 + 8 + 4, 28 = 8 + 8 + 8 + 4
        assert all(bool((cell == cell[0, 0]).all()) for cell in cells)
        assert 0 < sum(bool(cell[0, 0]) for cell in cells) < 12  # both kinds, P(not) = 2 x 2^-12 per clip
    assert not torch.equal(mask[0], mask[1]) and not torch.equal(mask[1], mask[2])  # a mask per clip


def test_the_masked_share_is_the_ratio_and_0_or_1_mask_nothing_or_everything():
    torch.manual_seed(0)  # no generator: the global CPU stream
    mask = patch_mask(10, 40, 40, 4, 0.7)
    masked = int(mask[:, 0, ::4, ::4].sum())  # one pixel per cell: 10 clips x 100 cells
    assert abs(masked - 700) < 4 * math.sqrt(1000 * 0.7 * 0.3)  # within 4 binomial standard deviations
    assert not patch_mask(4, 13, 21, 5, 0.0).any()
    assert patch_mask(4, 13, 21, 5, 1.0).all()


def test_the_mask_is_made_on_the_datas_device_from_the_cpu_stream():
    mask = patch_mask(2, 16, 16, 8, 0.5, device="meta")
    assert mask.device.type == "meta" and mask.shape == (2, 1, 16, 16)
    # The same seed gives the same mask whatever the device (the draws come from the CPU).
    a = patch_mask(2, 16, 16, 8, 0.5, generator=torch.Generator().manual_seed(3))
    b = patch_mask(2, 16, 16, 8, 0.5, device="cpu", generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


@pytest.mark.parametrize("patch_size,ratio", [(0, 0.5), (8, 1.5), (8, -0.1)])
def test_bad_mask_settings_are_refused(patch_size, ratio):
    with pytest.raises(ValueError, match="MIC"):
        patch_mask(1, 8, 8, patch_size, ratio)


def test_one_mask_covers_every_frame_of_a_clip_with_the_fill_colour():
    frames = torch.rand(2, 2, 3, 6, 6)
    masked = torch.zeros(2, 1, 6, 6, dtype=torch.bool)
    masked[0, 0, :3, :3] = True
    masked[1, 0, 3:, :] = True
    fill = torch.tensor([0.1, 0.2, 0.3])
    out = mask_clips(frames, masked, fill)
    expected = frames.clone()
    for t in range(2):
        for c in range(3):
            expected[0, t, c, :3, :3] = fill[c]
            expected[1, t, c, 3:, :] = fill[c]
    assert torch.equal(out, expected)


# --- the masking colour ------------------------------------------------------------------------------------
@pytest.mark.parametrize("style", ["torchvision", "caffe"])
def test_masked_pixels_take_the_colour_the_network_normalises_to_zero(style):
    norm = InputNorm(style)
    network = nn.Sequential(norm, nn.Conv2d(3, 2, 1))
    colour = normalised_zero(network, torch.zeros(1, dtype=torch.float64))
    assert colour.shape == (3,) and colour.dtype == torch.float64
    expected = (
        (0.485, 0.456, 0.406)
        if style == "torchvision"
        else (122.67891434 / 255, 116.66876762 / 255, 104.00698793 / 255)
    )
    torch.testing.assert_close(colour, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-6)
    # ... which is 0 after the network's own normalisation, as MIC's masked (normalised) pixels are.
    torch.testing.assert_close(
        norm(colour.float().view(1, 3, 1, 1)), torch.zeros(1, 3, 1, 1), rtol=0, atol=1e-5
    )
    # A network without input normalisation takes RGB as it is: its zero is black.
    assert torch.equal(normalised_zero(nn.Conv2d(3, 2, 1), torch.zeros(1)), torch.zeros(3))


# --- the pseudo-label quality weight -----------------------------------------------------------------------
def test_the_quality_weight_is_the_share_of_confident_non_ignored_pixels_per_clip():
    confidence = torch.tensor(
        [
            [[0.99, 0.97], [0.5, 0.98]],  # 3 of 4 at least 0.968
            [[0.99, 0.99], [0.1, 0.2]],  # the first pixel ignored: 1 of 3
            [[0.99, 0.99], [0.99, 0.99]],  # every pixel ignored
            [[0.75, 0.7499], [0.1, 0.1]],  # at the threshold counts (DAFormer's >=)
        ]
    )
    labels = torch.tensor(
        [[[1, 2], [0, 1]], [[255, 2], [0, 1]], [[255, 255], [255, 255]], [[0, 0], [0, 0]]], dtype=torch.long
    )
    quality = pseudo_label_quality(confidence[:3], labels[:3], 0.968)
    torch.testing.assert_close(quality, torch.tensor([0.75, 1 / 3, 0.0]))
    torch.testing.assert_close(pseudo_label_quality(confidence[3:], labels[3:], 0.75), torch.tensor([0.25]))


# --- the config --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "override, key",
    [
        ("method.mic.mask_ratio=1.5", "method.mic.mask_ratio"),
        ("method.mic.patch_size=0", "method.mic.patch_size"),
        ("method.mic.weight=-1", "method.mic.weight"),
        ("method.mic.quality_threshold=2", "method.mic.quality_threshold"),
        ("method.mic.enabled=maybe", "method.mic.enabled"),
        ("dataset.schedule.mic_patch_size=0", "dataset.schedule.mic_patch_size"),
    ],
)
def test_bad_mic_settings_are_one_sentence_naming_the_key(tmp_path, override, key):
    with pytest.raises(
        ConfigError, match=rf"^{re.escape(key)}=\S+ is not allowed: {re.escape(key)} must be "
    ):
        validate_config(compose_config("train", ["method=dastc", override], output_dir=tmp_path / "run"))


def test_the_cell_size_follows_the_benchmark(tmp_path):
    sizes = {
        name: compose_config("train", [f"dataset={name}", "method=tps"], output_dir=tmp_path).method.mic
        for name in ("toy", "synthia", "viper", "gta5", "synthia_image")
    }
    # MIC's 64 px at the real benchmarks' 512x1024 input, 8 px at the toy's 64x128 (1/8 of it); off everywhere.
    assert {name: mic.patch_size for name, mic in sizes.items()} == {
        "toy": 8,
        "synthia": 64,
        "viper": 64,
        "gta5": 64,
        "synthia_image": 64,
    }
    assert not any(mic.enabled for mic in sizes.values())


# --- the loss ----------------------------------------------------------------------------------------------
class _Fake(nn.Module):
    """A video network whose logits are known functions of both frames (so a mask on t-1 shows), with
    ImageNet input normalisation (whose zero colour masks) and an auxiliary head."""

    def __init__(self):
        super().__init__()
        self.input_norm = InputNorm("torchvision")
        self.seen = []

    def forward(self, frames, flow=None, **_):
        self.seen.append(frames)
        return SegmentationOutput(logits=3 * frames[:, -1] + frames[:, 0], aux_logits=-frames[:, -1])


def test_the_mic_loss_is_the_quality_weighted_ce_of_the_masked_view(monkeypatch):
    torch.manual_seed(0)
    frames = torch.rand(2, 2, 3, 4, 4)  # the student's view (t-1, t), 3 classes
    flow = torch.zeros(2, 1, 2, 4, 4)
    labels = torch.randint(0, 3, (2, 2, 4, 4))
    labels[0, 1, 0, :2] = 255  # 2 ignored pixels on clip 0's frame t
    confidence = torch.full((2, 2, 4, 4), 0.5)
    confidence[0, 1].view(-1)[[0, 1, 2, 3, 4, 5, 6, 7, 8]] = (
        0.99  # 7 of clip 0's 14 valid: 0.5 (0, 1 ignored)
    )
    confidence[1, 1].view(-1)[[3, 7, 11, 15]] = 0.99  # 4 of 16: 0.25
    aux = torch.randint(0, 3, (2, 4, 4))
    aux[1, 3, 3] = 255
    pseudo = PseudoLabels(labels, confidence, aux)
    mask = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    mask[0, 0, :2, :2] = True
    mask[1, 0, :, 2:] = True
    calls = []

    def fixed_mask(batch, height, width, patch_size, ratio, device=None, generator=None):
        calls.append((batch, height, width, patch_size, ratio))
        return mask

    monkeypatch.setattr("dastc.methods.tps.patch_mask", fixed_mask)
    student = _Fake()
    method = TPS(student, num_classes=3, class_names=["a", "b", "c"], mic={"enabled": True, "weight": 2.0})
    loss = method.mic_loss({"frames": frames, "flow": flow}, pseudo)

    assert calls == [(2, 4, 4, 64, 0.7)]  # MIC's defaults, at the view's size
    # By hand: masked pixels of both frames take ImageNet's mean colour; CE per pixel; clip weights 0.5, 0.25.
    mean = torch.tensor([0.485, 0.456, 0.406])
    seen = frames.clone()
    for b, (ys, xs) in enumerate([(slice(0, 2), slice(0, 2)), (slice(0, 4), slice(2, 4))]):
        for t in range(2):
            seen[b, t, :, ys, xs] = mean[:, None, None]
    assert torch.equal(student.seen[-1], seen)
    weights = torch.tensor([0.5, 0.25])[:, None, None]
    main = F.cross_entropy(3 * seen[:, 1] + seen[:, 0], labels[:, 1], ignore_index=255, reduction="none")
    aux_ce = F.cross_entropy(-seen[:, 1], aux, ignore_index=255, reduction="none")
    expected = 2.0 * ((main * weights).sum() / 30 + 0.1 * (aux_ce * weights).sum() / 31)
    torch.testing.assert_close(loss, expected)


def _method_and_batch(data_dir, method: str):
    cfg = compose_config(
        "train",
        [
            f"paths.data_dir={data_dir}",
            f"method={method}",
            "dataset.batch_size=2",
            "dataset.schedule.warmup_steps=1",
            "dataset.schedule.feature_fusion_start=0",
        ],
    )
    dm = build_datamodule(cfg)
    dm.prepare_data()
    dm.setup("fit")
    torch.manual_seed(0)
    return build_method(cfg, dm), next(iter(dm.train_dataloader()))


@pytest.mark.parametrize("name", ["tps", "dastc"])
def test_mic_adds_its_term_after_the_warm_up_and_changes_no_other_term(data_dir, name, monkeypatch):
    method, batch = _method_and_batch(data_dir, name)
    assert not method.mic.enabled and method.mic.patch_size == 8  # off by default; the toy's cell size
    results = {}
    for enabled in (False, True):
        # Threshold 0: every pseudo-label counts (an untrained teacher is never 0.968 confident: weight 0).
        method.mic = MICConfig(enabled=enabled, patch_size=8, quality_threshold=0.0)
        for step in (0, 1):  # warm-up (source only), then adaptation
            method._step_override = step
            torch.manual_seed(1)
            results[enabled, step] = method.training_losses(batch)
    assert set(results[False, 0]) == set(results[True, 0]) == {"source_ce"}  # nothing during the warm-up
    off, on = results[False, 1], results[True, 1]
    assert "target_mic" not in off and set(on) == {*off, "target_mic"}
    assert torch.isfinite(on["target_mic"]) and on["target_mic"] > 0
    for term in off:  # MIC runs last: every other term (and its random draws) is the same with it on
        torch.testing.assert_close(on[term], off[term], rtol=0, atol=0)
    # Off, the MIC pass never runs.
    monkeypatch.setattr(method, "mic_loss", lambda *a: pytest.fail("MIC ran while off"))
    method.mic = MICConfig(enabled=False)
    method.training_losses(batch)


# --- short trainings through the command line -------------------------------------------------------------
def _train(*args, cwd):
    proc = subprocess.run(
        [sys.executable, "-m", "dastc.train", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _logged(run_dir, key) -> dict[int, float]:
    path = run_dir / "csv" / "metrics.csv"
    rows = list(csv.DictReader(path.open()))
    return {int(r["step"]): float(r[key]) for r in rows if r.get(key)}


def test_dastc_with_mic_trains_on_the_toy_benchmark(data_dir, tmp_path):
    out = tmp_path / "run"
    _train(
        f"paths.data_dir={data_dir}",
        f"paths.output_dir={out}",
        "method=dastc",
        "method.mic.enabled=true",
        "trainer.max_steps=3",
        "trainer.log_every_n_steps=1",
        "trainer.limit_val_batches=1",
        "dataset.schedule.warmup_steps=1",
        "dataset.schedule.val_every=3",
        "dataset.schedule.panel_every=2",
        "dataset.batch_size=2",
        cwd=tmp_path,
    )
    mic = _logged(out, "train/target_mic")
    assert set(mic) == {1, 2} and all(math.isfinite(v) for v in mic.values())  # from adaptation on
    assert (out / "panels/mic/step000002.png").is_file()


def test_dastc_with_mic_trains_on_the_synthia_fixture(tmp_path):
    data_dir = write_synthia_benchmark(tmp_path / "data")
    out = tmp_path / "run"
    _train(
        "dataset=synthia",
        "dataset.schedule.two_stage=false",  # DA-STC alone (from random weights): the MIC pass is what counts
        "backbone=accel",
        "backbone.depth=18",
        "backbone.pretrained=null",
        "method=dastc",
        "method.mic.enabled=true",
        "method.mic.patch_size=8",
        f"paths.data_dir={data_dir}",
        f"paths.output_dir={out}",
        "trainer.max_steps=2",
        "trainer.log_every_n_steps=1",
        "dataset.schedule.val_every=2",
        "callbacks=none",
        "dataset.num_workers=0",
        "dataset.pin_memory=false",
        *SYNTHIA_TINY,
        cwd=tmp_path,
    )
    mic = _logged(out, "train/target_mic")
    assert set(mic) == {0, 1} and all(math.isfinite(v) for v in mic.values())
