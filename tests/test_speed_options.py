"""Speed options change speed, not results: bf16 autocast on CPU, activation checkpointing, channels_last and
torch.compile (eager backend here: the compile path without a compiler)."""

import json
from pathlib import Path

import torch

from dastc.checkpoint import describe_model
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
