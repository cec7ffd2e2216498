import copy

import pytest
import torch
from torch import nn

from dastc.build import build_datamodule, build_method
from dastc.errors import ConfigError
from dastc.methods.ema import EMATeacher
from dastc.methods.losses import cross_entropy
from dastc.methods.optim import OptimConfig, make_optimizer, make_poly_scheduler, poly_factor


def test_poly_factor_values():
    assert poly_factor(0, 100, 0.9) == 1.0
    assert poly_factor(50, 100, 1.0) == pytest.approx(0.5)
    assert poly_factor(40_000, 250_000, 0.9) == pytest.approx(
        (1 - 0.16) ** 0.9
    )  # ~0.855: docs/method.md, Optimisation
    assert poly_factor(500, 100, 0.9) == 0.0


def test_sgd_groups_and_poly_decay_of_every_group():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.head = nn.Linear(2, 2), nn.Linear(2, 2)

        def param_groups(self):
            return {"backbone": list(self.body.parameters()), "head": list(self.head.parameters())}

    opt = make_optimizer(Net(), OptimConfig(lr=0.1, head_lr_mult=10.0))
    sched = make_poly_scheduler(opt, horizon=10, power=1.0)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.1, 1.0])
    for _ in range(5):
        opt.step()
        sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.05, 0.5])  # the heads decay too
    assert opt.param_groups[0]["momentum"] == 0.9 and opt.param_groups[0]["weight_decay"] == 5e-4


def test_ema_teacher_update_is_exact_and_never_trains():
    student = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3), nn.Dropout(0.5))
    teacher = EMATeacher(student, momentum=0.9)
    start = copy.deepcopy(teacher.model.state_dict())
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    student.train()
    student(torch.randn(8, 3))  # moves batch norm statistics
    teacher.train()
    assert not teacher.model.training and all(not m.training for m in teacher.model.modules())
    teacher.update(student)
    for name, value in teacher.model.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(value, 0.9 * start[name] + 0.1 * student.state_dict()[name])
        else:
            assert torch.equal(value, student.state_dict()[name])
    assert all(not p.requires_grad for p in teacher.parameters())


def test_frozen_then_self_teacher_keeps_the_start_model_then_follows_the_student():
    student = nn.Linear(3, 3)
    teacher = EMATeacher(student, mode="frozen_then_self", switch_step=2)
    start = copy.deepcopy(teacher.model.state_dict())
    for step in range(4):
        with torch.no_grad():
            student.weight.add_(1.0)
        teacher.update(student)
        expected = start if step < 2 else student.state_dict()
        torch.testing.assert_close(teacher.model.state_dict(), expected)
    with torch.no_grad():
        student.weight.add_(1.0)
    teacher.restart(student)  # adaptation starts again from the student: frozen for 2 more steps
    assert int(teacher.steps) == 0
    torch.testing.assert_close(teacher.model.state_dict(), student.state_dict())
    with pytest.raises(ValueError, match="method.teacher.mode"):
        EMATeacher(student, mode="sometimes")


def test_cross_entropy_ignores_255_and_is_zero_when_all_ignored():
    logits = torch.zeros(1, 3, 2, 2, requires_grad=True)
    labels = torch.full((1, 2, 2), 255)
    assert cross_entropy(logits, labels).item() == 0.0
    labels[0, 0, 0] = 1
    assert cross_entropy(logits, labels).item() == pytest.approx(torch.log(torch.tensor(3.0)).item())


def test_one_source_only_training_step(make_cfg):
    cfg = make_cfg("dataset.batch_size=2")
    dm = build_datamodule(cfg)
    dm.prepare_data()
    dm.setup("fit")
    method = build_method(cfg, dm)
    batch = next(iter(dm.train_dataloader()))
    teacher_before = copy.deepcopy(method.teacher.state_dict())
    optimizer = make_optimizer(method.student, method.optim)
    method.log = method.log_dict = lambda *a, **k: None  # no trainer attached
    losses = []

    def closure():
        loss = method.training_step(batch, 0)
        assert loss.ndim == 0 and torch.isfinite(loss) and loss.requires_grad
        loss.backward()
        assert all(p.grad is None for p in method.teacher.parameters())
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in method.student.parameters())
        losses.append(loss)
        return loss

    method.optimizer_step(0, 0, optimizer, closure)
    assert len(losses) == 1 and method.bad_steps == 0
    changed = [not torch.equal(v, method.teacher.state_dict()[k]) for k, v in teacher_before.items()]
    assert any(changed)  # the teacher followed the student


def test_validation_accumulates_one_confusion_matrix_per_set(make_cfg):
    cfg = make_cfg()
    dm = build_datamodule(cfg)
    dm.prepare_data()
    dm.setup("validate")
    method = build_method(cfg, dm).eval()
    method.log = method.log_dict = lambda *a, **k: None
    loaders = dm.val_dataloader()
    with torch.no_grad():
        for idx, loader in enumerate(loaders):
            for batch in loader:
                method.validation_step(batch, 0, idx)
    total = method.val_confusion[0].confmat.sum().item()
    assert total == len(loaders[0].dataset) * 64 * 128  # every target val pixel scored once
    method.on_validation_epoch_end()
    assert set(method.last_val_metrics) == {"target", "source"}
    assert 0.0 <= method.last_val_metrics["target"]["mIoU"] <= 100.0


def test_adamw_with_a_linear_warm_up_then_poly():
    from dastc.methods.optim import lr_factor

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.head = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)

        def param_groups(self):
            return {"backbone": list(self.body.parameters()), "head": list(self.head.parameters())}

    cfg = OptimConfig(name="adamw", lr=6e-5, weight_decay=0.01, lr_warmup_steps=4)
    opt = make_optimizer(Net(), cfg)
    assert isinstance(opt, torch.optim.AdamW)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([6e-5, 6e-4])  # heads at 10x
    sched = make_poly_scheduler(opt, horizon=10, power=1.0, warmup=4)
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx(
        [6e-5 * f for f in (0.25, 0.5, 0.75, 1.0, 0.6, 0.5)]
    )  # warm-up, then 1 - s/10
    assert lr_factor(3, 10, 1.0, warmup=4) == 1.0 and lr_factor(4, 10, 1.0, warmup=4) == pytest.approx(0.6)
    with pytest.raises(ConfigError, match="method.optim.name must be"):
        make_optimizer(Net(), OptimConfig(name="lamb"))
