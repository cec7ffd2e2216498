"""method=tps and method=dastc as LightningModules: losses, ablation switches, learning on a fixed batch."""

import pytest
import torch

from dastc.build import build_datamodule, build_method
from dastc.checkpoint import init_weights_from
from dastc.config import compose_config
from dastc.errors import CheckpointError
from dastc.methods.optim import make_optimizer

ALL = {"source_ce", "target_ce", "mix_s2t_ce", "mix_t2s_ce", "feat_s2t_ce", "feat_t2s_ce", "align"}


def _method(data_dir, *overrides):
    backbone = [o for o in overrides if o.startswith("backbone=")] or ["backbone=accel", "backbone.depth=18"]
    rest = [o for o in overrides if not o.startswith("backbone=")]
    base = [
        f"paths.data_dir={data_dir}",
        "method=dastc",
        "dataset.schedule.feature_fusion_start=0",
        "dataset.schedule.warmup_steps=0",
    ]
    cfg = compose_config("train", [*base, *backbone, *rest])
    torch.manual_seed(0)
    method = build_method(cfg, build_datamodule(cfg))
    method.log = method.log_dict = lambda *a, **k: None
    return method


def _losses(method, batch):
    torch.manual_seed(1)
    return method.training_losses(batch)


@pytest.mark.parametrize(
    "switch,removed",
    [
        ("method.fusion.image=false", {"mix_s2t_ce", "mix_t2s_ce"}),
        ("method.fusion.feature=false", {"feat_s2t_ce", "feat_t2s_ce"}),
        ("method.align.enabled=false", {"align"}),
        ("method.fusion.directions=[s2t]", {"mix_t2s_ce", "feat_t2s_ce"}),  # ClassMix as DACS/DAFormer use it
        pytest.param(  # the mirror case of [s2t]: in the slow set, for time
            "method.fusion.directions=[t2s]", {"mix_s2t_ce", "feat_s2t_ce"}, marks=pytest.mark.slow
        ),
    ],
)
def test_every_ablation_switch_changes_exactly_the_losses_it_names(data_dir, batch, switch, removed):
    # Eval mode: dropout draws would otherwise differ with the number of forward passes before a loss.
    full = _losses(_method(data_dir).eval(), batch)
    ablated = _losses(_method(data_dir, switch).eval(), batch)
    assert set(full) == ALL and set(ablated) == ALL - removed
    for name in ablated:  # what the switch does not name is computed exactly as before
        torch.testing.assert_close(ablated[name], full[name])


@pytest.mark.parametrize("directions", ["[]", "[s2t,both]"])
def test_fusion_directions_must_name_s2t_or_t2s(data_dir, directions):
    with pytest.raises(Exception, match="method.fusion.directions must be a non-empty subset"):  # via Hydra
        _method(data_dir, f"method.fusion.directions={directions}")


def test_rare_class_pasting_changes_only_the_image_level_mixed_losses(data_dir, batch):
    # The authors paste the rare classes into both mixed clips (source->target and target->source).
    full = _losses(_method(data_dir).eval(), batch)
    ablated = _losses(_method(data_dir, "method.fusion.rare_class_paste=false").eval(), batch)
    assert set(ablated) == set(full) == ALL
    for name in ("mix_s2t_ce", "mix_t2s_ce"):
        assert not torch.isclose(ablated[name], full[name]), name
    for name in ALL - {"mix_s2t_ce", "mix_t2s_ce"}:
        torch.testing.assert_close(ablated[name], full[name])


def test_feature_fusion_waits_for_its_start_step(data_dir, batch):
    losses = _losses(_method(data_dir, "dataset.schedule.feature_fusion_start=1000"), batch)
    assert not {"feat_s2t_ce", "feat_t2s_ce"} & set(losses)


def test_tps_has_source_and_target_losses_only(data_dir, batch):
    cfg = compose_config(
        "train", [f"paths.data_dir={data_dir}", "method=tps", "dataset.schedule.warmup_steps=0"]
    )
    method = build_method(cfg, build_datamodule(cfg))
    assert set(_losses(method, batch)) == {"source_ce", "target_ce"}
    assert method.lambda_target == cfg.dataset.schedule.tps.lambda_target


def test_the_mmd_variant_runs(data_dir, batch):
    losses = _losses(_method(data_dir, "method.align.loss=mmd"), batch)
    assert torch.isfinite(losses["align"])


def test_a_few_dastc_steps_on_a_fixed_batch_reduce_the_total_loss(data_dir, batch):
    # Every loss a descent direction: small steps (the toy lr overshoots when one batch is repeated).
    method = _method(
        data_dir,
        "backbone=smp_unet",
        "method.strong_aug=false",
        "method.flip_prob=0",
        "dataset.schedule.lr=0.002",
    )
    optimizer = make_optimizer(method.student, method.optim)
    totals = []
    for _ in range(8):
        torch.manual_seed(1)  # the same masks every step: only the weights change
        total = sum(method.training_losses(batch).values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    assert totals[-1] < 0.8 * totals[0], totals


def test_strong_augmentation_is_one_draw_for_every_frame_of_a_clip():
    from dastc.methods.tps import strong_photometric

    augment = strong_photometric(blur_p=1.0, jitter_p=1.0)
    clip = torch.rand(1, 3, 16, 16).repeat(3, 1, 1, 1)  # three identical frames
    torch.manual_seed(0)
    out = augment(clip)
    assert not torch.allclose(out, clip)  # it did something
    for k in (1, 2):  # and the same thing to every frame
        torch.testing.assert_close(out[k], out[0])


def test_warm_up_trains_on_the_source_then_restarts_the_teacher_from_the_student(
    data_dir, batch, monkeypatch
):
    method = _method(data_dir, "dataset.schedule.warmup_steps=3")
    assert set(_losses(method, batch)) == {"source_ce"}  # step 0 of 3 warm-up steps
    with torch.no_grad():
        for p in method.student.parameters():
            p.add_(0.5)
    monkeypatch.setattr(type(method), "global_step", property(lambda self: 3))
    method.on_train_batch_start(batch, 0)  # adaptation starts: the teacher becomes the warmed-up student
    torch.testing.assert_close(method.teacher.model.state_dict(), method.student.state_dict())
    assert set(_losses(method, batch)) == ALL


def _stage_checkpoint(tmp_path, data_dir, *overrides):
    """A checkpoint file as dastc.train writes it (weights + run config) of a freshly built method."""
    cfg = compose_config(
        "train", [f"paths.data_dir={data_dir}", "backbone=accel", "backbone.depth=18", *overrides]
    )
    torch.manual_seed(3)
    method = build_method(cfg, build_datamodule(cfg))
    path = tmp_path / "stage1.ckpt"
    torch.save({"state_dict": method.state_dict(), "dastc_config": method.run_config}, path)
    return path, method


def test_init_from_loads_a_tps_stage_into_dastc_except_the_new_head(data_dir, tmp_path):
    path, tps = _stage_checkpoint(tmp_path, data_dir, "method=tps", "backbone.head=aspp")
    dastc = _method(data_dir)  # backbone.head=deeplabv2 (docs/method.md, DA-STC teacher and stage 2)
    cfg = compose_config(
        "train", [f"paths.data_dir={data_dir}", "method=dastc", "backbone=accel", "backbone.depth=18"]
    )
    report = init_weights_from(dastc, path, cfg)
    assert report["kept"] and all(k.startswith("frame_net.head.") for k in report["kept"])
    assert report["ignored"] and all(k.startswith("frame_net.head.") for k in report["ignored"])
    stored = tps.student.state_dict()
    for name, value in dastc.student.state_dict().items():
        if name in report["loaded"]:
            assert torch.equal(value, stored[name]), name
    assert (
        any(k.startswith("frame_net.aux") for k in report["loaded"]) and "fusion.weight" in report["loaded"]
    )
    torch.testing.assert_close(dastc.teacher.model.state_dict(), dastc.student.state_dict())


@pytest.mark.parametrize(
    "stage_override,message",
    [("backbone.depth=34", "depth: 34 vs 18"), ("dataset.class_names=[a,b,c,d,e,f,g,h]", "classes")],
)
def test_init_from_refuses_another_network_or_other_classes(data_dir, tmp_path, stage_override, message):
    path, _ = _stage_checkpoint(tmp_path, data_dir, "method=tps", stage_override)
    cfg = compose_config(
        "train", [f"paths.data_dir={data_dir}", "method=dastc", "backbone=accel", "backbone.depth=18"]
    )
    with pytest.raises(CheckpointError, match=message):
        init_weights_from(_method(data_dir), path, cfg)
