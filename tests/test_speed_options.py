"""Speed options change speed, not results: bf16 autocast on CPU, activation checkpointing, channels_last and
torch.compile (eager backend here: the compile path without a compiler)."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from dastc.build import apply_speed_options
from dastc.checkpoint import describe_model
from dastc.methods.losses import segmentation_loss
from dastc.models.deeplabv2 import DeepLabV2
from dastc.train import train

TINY = [
    "method=dastc",
    "trainer.max_steps=2",
    "dataset.schedule.warmup_steps=1",
    "dataset.schedule.feature_fusion_start=0",
    "dataset.schedule.val_every=2",
    "dataset.batch_size=2",
    "trainer.limit_val_batches=1",
    "callbacks=none",
    "logger=[]",
]


def test_bf16_autocast_trains_a_dastc_step_on_cpu(make_cfg):
    dtypes = set()

    def hook(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d) and torch.is_grad_enabled():
            dtypes.add(output.dtype)

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        cfg = make_cfg(*TINY, "trainer.precision=bf16-mixed")
        metrics = train(cfg)
    finally:
        handle.remove()
    assert dtypes == {torch.bfloat16}  # every training convolution ran under bf16 autocast
    assert 0 <= metrics["target"]["mIoU"] <= 100
    stored = torch.load(f"{cfg.paths.output_dir}/checkpoints/last.ckpt", weights_only=False)
    assert stored["global_step"] == 2
    assert all(v.dtype != torch.bfloat16 for v in stored["state_dict"].values())  # weights stay fp32


def test_activation_checkpointing_gives_the_same_outputs_and_gradients():
    torch.manual_seed(0)
    plain = DeepLabV2(4, depth=18)
    recomputed = DeepLabV2(4, depth=18, activation_checkpointing=True)
    recomputed.load_state_dict(plain.state_dict())
    plain.eval(), recomputed.eval()  # no dropout draws in the head
    x = torch.rand(2, 3, 33, 65)
    grads = []
    for net in (plain, recomputed):
        out = net(x)
        (out.logits.square().mean() + out.aux_logits.mean()).backward()
        grads.append({n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None})
    torch.testing.assert_close(plain(x).logits, recomputed(x).logits)
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 20
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], msg=name)
    # A checkpoint fits whatever this switch is.
    a = {"backbone": {"depth": 18, "activation_checkpointing": True}, "dataset": {"class_names": ["a"]}}
    b = {"backbone": {"depth": 18, "activation_checkpointing": False}, "dataset": {"class_names": ["a"]}}
    assert describe_model(a) == describe_model(b)


def test_channels_last_and_compiled_networks_train_and_save_plain_parameter_names(make_cfg):
    formats = set()

    def hook(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d) and module.weight.shape[-1] > 1:
            formats.add(module.weight.is_contiguous(memory_format=torch.channels_last))

    cfg = make_cfg(*TINY, "model.channels_last=true", "model.compile=true", "model.compile_backend=eager")
    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        metrics = train(cfg)
    finally:
        handle.remove()
    assert formats == {True}  # every spatial convolution's weights in channels_last
    stored = torch.load(f"{cfg.paths.output_dir}/checkpoints/last.ckpt", weights_only=False)
    assert not [k for k in stored["state_dict"] if "_orig_mod" in k]  # loadable by an uncompiled network
    written = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())["metrics"]
    assert written == metrics and stored["global_step"] == 2


# --- the same step with and without each speed option (issue 17, section 2) -------------------------------------
def _one_sgd_step(option: str | None):
    """Loss and parameter update of one SGD step of a small DeepLab-v2 on a fixed batch, with ``option`` on
    (``channels_last`` / ``compile`` through the project's ``apply_speed_options``; ``bf16``: CPU autocast,
    as Lightning's ``bf16-mixed`` runs the forward pass)."""
    torch.manual_seed(0)
    net = DeepLabV2(4, depth=18).eval()  # eval: no dropout draws; batch norm is frozen in this network anyway
    start = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.rand(2, 3, 33, 65, generator=torch.Generator().manual_seed(1))
    labels = torch.randint(0, 4, (2, 33, 65), generator=torch.Generator().manual_seed(2))
    labels[:, :3] = 255
    if option in ("channels_last", "compile"):
        holder = SimpleNamespace(
            student=net, teacher=SimpleNamespace(model=torch.nn.Identity(), initial=None)
        )
        apply_speed_options(
            holder, {"channels_last": option == "channels_last", "compile": option == "compile",
                     "compile_backend": "eager"}
        )  # fmt: skip
    optimizer = torch.optim.SGD(net.parameters(), lr=1.0)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=option == "bf16"):
        out = net(x)
    loss = segmentation_loss(out, labels, 0.4, 255)
    loss.backward()
    optimizer.step()
    update = {k: v.detach() - start[k] for k, v in net.state_dict().items() if v.is_floating_point()}
    return loss.detach().float(), update


@pytest.fixture(scope="module")
def plain_step():
    return _one_sgd_step(None)


# Tolerances, relative to the loss and to the largest weight update of the plain fp32 step:
# - channels_last and compile (eager backend) do the same fp32 arithmetic in another memory order or through a
#   traced graph: only summation order may change, so 1e-4 (seen: 0 and ~2e-5).
# - bf16 keeps 8 significant bits (rounding ~2e-3 per operation); over ~20 convolutions forward and their bf16
#   backward the error compounds to about 1e-2 of the loss and 2.5e-2 of the update (seen), so 3e-2 / 1e-1.
TOLERANCE = {"channels_last": (1e-4, 1e-4), "compile": (1e-4, 1e-4), "bf16": (3e-2, 1e-1)}


@pytest.mark.parametrize("option", ["channels_last", "bf16", "compile"])
def test_a_speed_option_gives_the_plain_steps_loss_and_weight_update(plain_step, option):
    loss_tol, update_tol = TOLERANCE[option]
    plain_loss, plain_update = plain_step
    loss, update = _one_sgd_step(option)
    torch.testing.assert_close(loss, plain_loss, rtol=loss_tol, atol=0)
    largest = max(u.abs().max().item() for u in plain_update.values())
    assert largest > 1e-3  # the step really moves the weights, so equal updates say something
    assert update.keys() == plain_update.keys()
    for name in plain_update:
        torch.testing.assert_close(
            update[name], plain_update[name], rtol=0, atol=update_tol * largest, msg=name
        )
