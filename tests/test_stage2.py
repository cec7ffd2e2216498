"""Stage 2 of the paper's recipe: DA-STC started from a TPS run labels the target with that run's trained network
(never with its own untrained head), and a DA-STC run at the paper's batch size resumes exactly."""

import shutil

import torch
from real_fixtures import SYNTHIA_TINY, write_synthia_benchmark

from dastc.build import build_datamodule, build_method, rebuild_run
from dastc.checkpoint import init_weights_from, load_run_checkpoint
from dastc.config import compose_config
from dastc.methods.pseudo_labels import clip_pseudo_labels
from dastc.train import train

ACCEL = ["backbone=accel", "backbone.depth=18"]


def _built(data_dir, *overrides):
    cfg = compose_config("train", [f"paths.data_dir={data_dir}", *ACCEL, *overrides])
    return cfg, build_method(cfg, build_datamodule(cfg))


def _tps_stage(data_dir, tmp_path):
    """A TPS run's checkpoint (ASPP head, weights moved off their initialisation) and its method."""
    torch.manual_seed(3)
    _, tps = _built(data_dir, "method=tps", "backbone.head=aspp")
    with torch.no_grad():
        for p in tps.student.parameters():
            p.add_(0.01 * torch.randn_like(p))  # as if trained
    path = tmp_path / "tps.ckpt"
    torch.save({"state_dict": tps.state_dict(), "dastc_config": tps.run_config}, path)
    return path, tps.eval()


def _clip(data_dir):
    cfg = compose_config("train", [f"paths.data_dir={data_dir}"])
    dm = build_datamodule(cfg)
    dm.prepare_data()
    dm.setup("fit")
    return dm.val_dataloader()[0].dataset[0]


def test_after_init_from_a_tps_run_the_teacher_predicts_what_that_run_predicts(data_dir, tmp_path):
    path, tps = _tps_stage(data_dir, tmp_path)
    cfg, dastc = _built(data_dir, "method=dastc", "method.teacher.switch_step=2")
    report = init_weights_from(dastc, path, cfg)
    assert report["kept"]  # DA-STC's 256-d head is new: the student's classifier is untrained
    clip = _clip(data_dir)
    frames, flow = clip["frames"][None], clip["flow"][None]
    with torch.no_grad():
        expected = tps.student(frames, flow).logits
        torch.testing.assert_close(dastc.teacher(frames, flow).logits, expected)
        assert not torch.allclose(dastc.teacher.model(frames, flow).logits, expected)  # a copy would not
    for _ in range(2):  # switch_step adaptation steps later the student's average takes over
        dastc.teacher.update(dastc.student)
    assert dastc.teacher.initial is None and dastc.teacher.labeller() is dastc.teacher.model


def test_a_checkpoint_keeps_the_start_network_while_it_labels(data_dir, tmp_path):
    path, tps = _tps_stage(data_dir, tmp_path)
    cfg, dastc = _built(data_dir, "method=dastc")
    init_weights_from(dastc, path, cfg)
    checkpoint = {}
    dastc.on_save_checkpoint(checkpoint)
    checkpoint["state_dict"] = dastc.state_dict()
    _, fresh = _built(data_dir, "method=dastc")  # a resumed or re-scored run builds it anew
    fresh.load_run_weights(checkpoint)
    clip = _clip(data_dir)
    with torch.no_grad():
        torch.testing.assert_close(
            fresh.eval().teacher(clip["frames"][None], clip["flow"][None]).logits,
            tps.student(clip["frames"][None], clip["flow"][None]).logits,
        )
    dastc.teacher.initial = dastc.teacher.initial_config = None  # past switch_step: not stored any more
    later = {"state_dict": dastc.state_dict()}
    fresh.load_run_weights(later)
    assert fresh.teacher.initial is None


def test_the_synthia_preset_stage_two_labels_with_the_tps_run(tmp_path):
    data_dir = write_synthia_benchmark(tmp_path / "data")
    common = [
        f"paths.data_dir={data_dir}",
        "backbone.depth=18",
        "trainer=cpu",
        "trainer.max_steps=1",
        "dataset.schedule.val_every=1",
        "dataset.num_workers=0",
        "dataset.pin_memory=false",
        "callbacks=none",
        "logger=csv",
        *SYNTHIA_TINY,
    ]
    stage1 = tmp_path / "tps"
    train(
        compose_config(
            "train", ["experiment=synthia2city_tps", "backbone.pretrained=null", *common], output_dir=stage1
        )
    )
    cfg = compose_config(
        "train",
        ["experiment=synthia2city_dastc", f"model.init_from={stage1}", "method.flip_prob=0", *common],
        output_dir=tmp_path / "dastc",
    )
    dm = build_datamodule(cfg)
    dm.prepare_data()
    dm.setup("fit")
    dastc = build_method(cfg, dm)
    init_weights_from(dastc, stage1, cfg)
    target = next(iter(dm.train_dataloader()))["target"]
    first = dastc.pseudo_labels(target)  # the first step's pseudo-labels
    checkpoint = load_run_checkpoint(stage1 / "checkpoints/last.ckpt")
    _, _, tps = rebuild_run(checkpoint, cfg.paths)
    tps.load_run_weights(checkpoint)
    expected = clip_pseudo_labels(tps.student.eval(), target["frames"], target["flow"])
    assert torch.equal(first.labels, expected.labels) and torch.equal(first.aux, expected.aux)
    torch.testing.assert_close(first.confidence, expected.confidence)


def test_a_dastc_run_at_batch_one_resumes_inside_adaptation_exactly(data_dir, tmp_path):
    quick = [
        f"paths.data_dir={data_dir}",
        "method=dastc",
        "dataset.batch_size=1",
        "dataset.schedule.warmup_steps=1",
        "dataset.schedule.feature_fusion_start=0",
        "dataset.schedule.ckpt_every=2",
        "dataset.schedule.val_every=4",
        "dataset.schedule.poly_horizon=4",
        "trainer.max_steps=4",
        "trainer.limit_val_batches=1",
        "~callbacks.sample_panels",
        "logger=csv",
    ]
    train(compose_config("train", quick, output_dir=tmp_path / "full"))
    # Killed after step 2 (adaptation began at step 1, so step 3 pastes step 2's source clip).
    (tmp_path / "half/checkpoints").mkdir(parents=True)
    shutil.copy(tmp_path / "full/checkpoints/step000002.ckpt", tmp_path / "half/checkpoints/last.ckpt")
    train(compose_config("train", [*quick, f"ckpt_path={tmp_path / 'half'}"]))
    full = torch.load(tmp_path / "full/checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    resumed = torch.load(tmp_path / "half/checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    assert full["state_dict"].keys() == resumed["state_dict"].keys()
    for key, value in full["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][key]), key  # student and teacher alike
    for key, value in full["dastc_previous_source"].items():
        assert torch.equal(value, resumed["dastc_previous_source"][key]), key
