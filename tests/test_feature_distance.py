"""DAFormer's ImageNet feature distance (method.fdist): the masked distance and its label rule by hand, the thing
classes of each benchmark, the frozen encoder's weights (ImageNet's, also after model.init_from), devices,
checkpoints, and training through the command line with it on."""

from __future__ import annotations

import copy
import csv
import math

import lightning as L
import pytest
import torch
import torchvision
from hydra.utils import instantiate
from real_fixtures import SYNTHIA_TINY, write_synthia_benchmark
from test_entry_points import run
from torch import nn

from dastc.build import build_datamodule, build_method, rebuild_run
from dastc.checkpoint import init_weights_from, load_run_checkpoint
from dastc.config import compose_config
from dastc.errors import ConfigError
from dastc.methods.feature_distance import FeatureDistance, cell_classes, thing_class_ids
from dastc.methods.optim import OptimConfig, make_optimizer
from dastc.recipe import stage_configs
from dastc.schema import validate_config

ON = "method.fdist.enabled=true"
ACCEL = ["backbone=accel", "backbone.depth=18"]


def _method(data_dir, *overrides):
    cfg = compose_config("train", [f"paths.data_dir={data_dir}", ON, *overrides])
    return cfg, build_method(cfg, build_datamodule(cfg))


# --- the rule and the distance, by hand -------------------------------------------------------------------


def test_a_cell_takes_the_class_holding_at_least_the_min_ratio_of_its_pixels():
    # 4x6 labels, 2x3 cells of 2x2 pixels; classes 0..2, 255 ignored.
    labels = torch.tensor(
        [
            [0, 0, 1, 1, 2, 2],
            [0, 0, 1, 2, 1, 1],
            [255, 255, 2, 2, 1, 255],
            [255, 1, 2, 255, 2, 0],
        ]
    )[None]
    # (0,0) all 0 | (0,1) 1 holds 3/4 = 0.75: kept | (0,2) 2 and 1 hold 1/2 each: ignored
    # (1,0) ignore holds 3/4: ignored | (1,1) 2 holds 3/4: kept | (1,2) four classes of 1/4: ignored
    expected = torch.tensor([[0, 1, 255], [255, 2, 255]])[None]
    assert torch.equal(cell_classes(labels, (2, 3), 3, 0.75), expected)
    # At 0.8 the 3/4 cells fall below the ratio too.
    assert torch.equal(
        cell_classes(labels, (2, 3), 3, 0.8), torch.tensor([[0, 255, 255], [255, 255, 255]])[None]
    )


def test_cells_of_a_grid_that_does_not_divide_the_labels_are_adaptive_pooling_bins():
    # 5 columns to 2 cells: columns 0..2 and 2..4 (floor(i 5/2) to ceil((i+1) 5/2) - 1).
    labels = torch.tensor([[[1, 1, 1, 0, 0]]])
    assert torch.equal(cell_classes(labels, (1, 2), 2, 0.75), torch.tensor([[[1, 255]]]))  # 0 holds 2/3
    assert torch.equal(cell_classes(labels, (1, 2), 2, 0.6), torch.tensor([[[1, 0]]]))


class Passthrough(nn.Module):
    """A "network" whose encoder is the identity: the frozen features are the images the test passes."""

    def bottleneck_encoder(self) -> nn.Module:
        return nn.Identity()


def test_the_masked_distance_on_a_hand_made_case():
    fd = FeatureDistance(
        Passthrough(), ["road", "car", "person"], weight=0.5, thing_classes=["car", "person"]
    )
    assert fd.things == [1, 2]
    frozen = torch.zeros(1, 2, 2, 2)
    student = torch.tensor([[[3.0, 1.0], [6.0, 0.0]], [[4.0, 1.0], [8.0, 2.0]]])[None].requires_grad_()
    labels = torch.tensor(
        [
            [1, 1, 2, 2],
            [1, 1, 2, 0],  # cell (0,0) all car; cell (0,1) person 3/4: counted
            [2, 2, 0, 0],
            [0, 0, 0, 0],  # cell (1,0) person 1/2: below 0.75; cell (1,1) road: not a thing
        ]
    )[None]
    loss = fd(frozen, student, labels)
    # |(3, 4)| = 5 and |(1, 1)| = sqrt 2 over the two counted cells, times the weight 0.5
    assert loss.item() == pytest.approx(0.5 * (5 + math.sqrt(2)) / 2, rel=1e-6)
    loss.backward()
    # d/dS of 0.5 / 2 x |S| is 0.25 S / |S| on counted cells, 0 elsewhere
    expected = torch.tensor([[[0.15, 0.25 / math.sqrt(2)], [0, 0]], [[0.2, 0.25 / math.sqrt(2)], [0, 0]]])
    torch.testing.assert_close(student.grad[0], expected)


def test_no_thing_cell_gives_zero_with_a_gradient_path():
    fd = FeatureDistance(Passthrough(), ["road", "car"], thing_classes=["car"])
    student = torch.ones(1, 2, 2, 2, requires_grad=True)
    loss = fd(torch.zeros(1, 2, 2, 2), student, torch.zeros(1, 4, 4, dtype=torch.long))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(student.grad, torch.zeros_like(student))


# --- thing classes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dataset,expected",
    [
        ("toy", [6, 7]),  # car, person
        ("synthia", [5, 6, 9, 10, 11]),  # traffic light, traffic sign, person, rider, car
        ("viper", [4, 5, 9, 10, 11, 12, 13, 14]),  # light, sign, person, car, truck, bus, motorcycle, bicycle
    ],
)
def test_the_thing_classes_map_through_each_benchmarks_class_names(tmp_path, dataset, expected):
    cfg = compose_config("train", [f"dataset={dataset}", ON], output_dir=tmp_path / "run")
    validate_config(cfg)
    assert thing_class_ids(cfg.method.fdist.thing_classes, cfg.dataset.class_names) == expected


@pytest.mark.parametrize(
    "overrides, text",
    [
        (["method.fdist.thing_classes=[car,persn]"], "method.fdist.thing_classes names 'persn'"),
        (["method.fdist.thing_classes=[truck]"], "holds no class of this benchmark"),  # the toy has no truck
        (["method.fdist.weight=-1"], "method.fdist.weight=-1 is not allowed"),
        (["method.fdist.scale_min_ratio=1.5"], "method.fdist.scale_min_ratio=1.5 is not allowed"),
    ],
)
def test_a_bad_fdist_value_is_one_sentence_naming_it(tmp_path, overrides, text):
    cfg = compose_config("train", [ON, *overrides], output_dir=tmp_path / "run")
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    assert text in str(err.value) and "\n" not in str(err.value)


# --- the frozen encoder ------------------------------------------------------------------------------------


def test_the_distance_is_zero_for_the_initial_student_and_grows_as_it_trains(data_dir, batch):
    _, method = _method(data_dir, "method=source_only")
    initial = copy.deepcopy(method.fdist.state_dict())
    method.train()
    assert not method.fdist.frozen.training and not any(p.requires_grad for p in method.fdist.parameters())
    assert not any(k.startswith("fdist") for k in method.teacher.state_dict())  # not part of the student
    optimizer = make_optimizer(method.student, OptimConfig(lr=0.05))
    frozen_ids = {id(p) for p in method.fdist.parameters()}
    assert not any(id(p) in frozen_ids for group in optimizer.param_groups for p in group["params"])
    distances = []
    for _ in range(3):
        losses = method.training_losses(batch)
        distances.append(losses["source_fdist"].item())
        optimizer.zero_grad()
        sum(losses.values()).backward()
        assert all(p.grad is None or p.grad.isfinite().all() for p in method.student.parameters())
        optimizer.step()
    assert distances[0] == 0.0 and distances[1] > 0 and distances[2] > 0
    for key, value in method.fdist.state_dict().items():
        assert torch.equal(value, initial[key]), key  # the frozen encoder never moved


def _imagenet_file(path):
    """A torchvision ResNet-18 file standing in for ImageNet weights (nothing downloaded)."""
    torch.manual_seed(0)
    state = torchvision.models.resnet18().state_dict()
    torch.save(state, path)
    return state


def test_with_init_from_the_frozen_encoder_keeps_imagenet_not_the_stage_one_network(data_dir, tmp_path):
    imagenet = _imagenet_file(tmp_path / "resnet18.pth")
    torch.manual_seed(3)
    tps_cfg = compose_config(
        "train", [f"paths.data_dir={data_dir}", *ACCEL, "method=tps", "backbone.head=aspp"]
    )
    tps = build_method(tps_cfg, build_datamodule(tps_cfg))
    with torch.no_grad():
        for p in tps.student.parameters():
            p.add_(0.01 * torch.randn_like(p))  # as if trained
    stage1 = tmp_path / "tps.ckpt"
    torch.save({"state_dict": tps.state_dict(), "dastc_config": tps.run_config}, stage1)
    cfg, dastc = _method(data_dir, *ACCEL, "method=dastc", f"backbone.pretrained={tmp_path / 'resnet18.pth'}")
    init_weights_from(dastc, stage1, cfg)
    key = "conv1.weight"
    frozen = dict(dastc.fdist.frozen.encoder[1].named_parameters())[key]  # [input_norm, trunk]
    student = dict(dastc.student.frame_net.trunk.named_parameters())[key]
    assert torch.equal(frozen, imagenet[key])
    assert torch.equal(student, tps.state_dict()[f"student.frame_net.trunk.{key}"])
    assert not torch.equal(frozen, student)


def test_the_two_stage_recipe_keeps_imagenet_weights_for_stage_two_only_with_fdist(tmp_path):
    for fdist, expected in (("false", None), ("true", "/weights/resnet.pth")):
        cfg = compose_config(
            "train",
            [
                "dataset=synthia",
                *ACCEL,
                "backbone.pretrained=/weights/resnet.pth",
                f"method.fdist.enabled={fdist}",
            ],
        )
        stages = stage_configs(cfg, tmp_path)
        assert stages["stage1_tps"].backbone.pretrained == "/weights/resnet.pth"
        assert stages["stage2_dastc"].backbone.pretrained == expected


def test_the_distance_computes_on_the_datas_device(data_dir, batch):
    _, method = _method(data_dir, "method=source_only")
    method.to("meta")  # any tensor made without the data's device would meet it and fail
    source = {k: batch["source"][k].to("meta") for k in ("frames", "labels")}
    _, losses = method.source_loss(source)
    assert losses["source_fdist"].device.type == "meta" and losses["source_fdist"].shape == ()


def test_a_resumed_run_with_fdist_switched_loads_its_checkpoint(data_dir):
    _, off = _method(data_dir, "method=source_only", "method.fdist.enabled=false")
    _, on = _method(data_dir, "method=source_only")
    built = copy.deepcopy(on.fdist.state_dict())
    for source, target in ((off, on), (on, off)):
        checkpoint = {"state_dict": copy.deepcopy(source.state_dict())}
        target.on_load_checkpoint(checkpoint)
        target.load_state_dict(checkpoint["state_dict"])  # strict: every key fits
    for key, value in on.fdist.state_dict().items():
        assert torch.equal(value, built[key]), key  # switched on: this run's own frozen encoder


# --- through the command line ------------------------------------------------------------------------------

QUICK = [
    "trainer.max_steps=2",
    "dataset.schedule.warmup_steps=1",  # DA-STC adapts from step 1
    "dataset.schedule.feature_fusion_start=0",
    "dataset.schedule.val_every=2",
    "dataset.batch_size=2",
    "trainer.limit_val_batches=1",
    "trainer.log_every_n_steps=1",
    "callbacks=none",
    "logger=csv",
]


def _logged_fdist(out):
    rows = list(csv.DictReader((out / "csv" / "metrics.csv").open()))
    return [float(r["train/source_fdist"]) for r in rows if r.get("train/source_fdist")]


# DA-STC with fdist also trains in the SYNTHIA-Seq test's stage 2; its toy run is in the slow set, for time.
@pytest.mark.parametrize("method", ["source_only", pytest.param("dastc", marks=pytest.mark.slow)])
def test_training_with_fdist_on_the_toy_benchmark(data_dir, tmp_path, method):
    out = tmp_path / "run"
    proc = run(
        "dastc.train", f"method={method}", ON, f"paths.data_dir={data_dir}", f"paths.output_dir={out}", *QUICK,
        cwd=tmp_path,
    )  # fmt: skip
    assert (
        "pulls towards them, not towards ImageNet features" in proc.stdout + proc.stderr
    )  # U-Net: random init
    logged = _logged_fdist(out)
    assert len(logged) == 2 and logged[0] == 0.0 and math.isfinite(logged[1]) and logged[1] > 0
    # The checkpoint holds the frozen encoder: scoring it again gets the same weights back, not a new random init.
    checkpoint = load_run_checkpoint(out / "checkpoints" / "last.ckpt")
    stored = {k: v for k, v in checkpoint["state_dict"].items() if k.startswith("fdist.")}
    L.seed_everything(99)  # another random init than the run's
    _, _, rebuilt = rebuild_run(checkpoint, compose_config("train", [f"paths.data_dir={data_dir}"]).paths)
    rebuilt.load_run_weights(checkpoint)
    assert stored and all(torch.equal(rebuilt.state_dict()[k], v) for k, v in stored.items())


def test_training_with_fdist_on_a_synthia_seq_copy_both_stages(tmp_path):
    data_dir = write_synthia_benchmark(tmp_path / "data")
    out = tmp_path / "run"
    run(
        "dastc.train",
        "dataset=synthia",
        *ACCEL,
        "backbone.pretrained=null",
        ON,
        f"paths.data_dir={data_dir}",
        f"paths.output_dir={out}",
        "trainer.max_steps=1",
        "dataset.schedule.val_every=1",
        "dataset.num_workers=0",
        "dataset.pin_memory=false",
        "trainer.log_every_n_steps=1",
        "callbacks=none",
        *SYNTHIA_TINY,
        cwd=tmp_path,
    )
    # method.* overrides apply to stage 2 (DA-STC): stage 1 is plain TPS. Stage 2's student starts from stage
    # 1's weights, its frozen encoder from the random initial ones (no ImageNet here): a distance from step 0.
    assert not _logged_fdist(out / "stage1_tps")
    (logged,) = _logged_fdist(out / "stage2_dastc")
    assert math.isfinite(logged) and logged > 0


@pytest.mark.parametrize(
    "backbone",
    [
        ACCEL,
        ["backbone=smp_unet"],
        ["backbone=deeplabv3plus", "backbone.encoder_name=resnet18"],
        ["backbone=segformer", "backbone.encoder_name=mit_b0"],
        [
            *ACCEL,
            "multires=hrda",
        ],  # the context pass's bottleneck: the frozen copy sees the input at its scale
        ["backbone=segformer", "backbone.encoder_name=mit_b0", "multires=hrda"],
    ],
    ids=["accel", "smp_unet", "deeplabv3plus", "segformer", "accel+hrda", "segformer+hrda"],
)
def test_each_networks_bottleneck_encoder_computes_its_outputs_bottleneck(backbone):
    net = instantiate(compose_config("train", [*backbone, "backbone.pretrained=null"]).backbone).eval()
    torch.manual_seed(0)
    frames, flow = torch.rand(2, 2, 3, 64, 128), torch.zeros(2, 1, 2, 64, 128)
    with torch.no_grad():
        out = net(frames, flow)
        encoder = copy.deepcopy(net.bottleneck_encoder())  # what the frozen copy holds
        assert out.bottleneck is not None
        torch.testing.assert_close(encoder(frames[:, -1]), out.bottleneck)
