"""The optimiser and learning-rate schedule: SGD with poly decay, the TPS/DA-VSN/DA-STC video recipe
(docs/method.md, Optimisation), or AdamW with a linear warm-up before the poly decay, the image extension's
(docs/method.md, Images (clips of one frame))."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dastc.errors import ConfigError


@dataclass
class OptimConfig:
    name: str = "sgd"  # sgd | adamw
    lr: float = 2.5e-4
    momentum: float = 0.9  # sgd
    betas: tuple[float, float] = (0.9, 0.999)  # adamw
    weight_decay: float = 5e-4
    head_lr_mult: float = 10.0
    poly_power: float = 0.9
    poly_horizon: int | None = None  # iterations of the poly curve; None: the run's max_steps
    lr_warmup_steps: int = 0  # linear warm-up from 0 to lr over these steps, then the poly curve


def poly_factor(step: int, horizon: int, power: float) -> float:
    """(1 - step / horizon) ** power, held at 0 past the horizon."""
    return (1.0 - min(step, horizon) / horizon) ** power


def make_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """SGD or AdamW (``cfg.name``) over the model's ``param_groups()`` (backbone at lr, heads at
    ``head_lr_mult`` x lr)."""
    if cfg.name not in ("sgd", "adamw"):
        raise ConfigError(f"method.optim.name must be 'sgd' or 'adamw', got {cfg.name!r}")
    groups = (
        model.param_groups() if hasattr(model, "param_groups") else {"backbone": list(model.parameters())}
    )
    mults = {"backbone": 1.0, "head": cfg.head_lr_mult}
    groups = {
        name: [p for p in params if p.requires_grad] for name, params in groups.items()
    }  # frozen BN out
    params = [
        {"params": p, "lr": cfg.lr * mults.get(name, 1.0), "name": name} for name, p in groups.items() if p
    ]
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def lr_factor(step: int, horizon: int, power: float, warmup: int = 0) -> float:
    """The schedule's factor on the base lr at ``step``: (step + 1) / warmup during a linear warm-up, then the
    poly curve (counted from step 0, as MIC/HRDA's warm-up-then-poly is)."""
    if step < warmup:
        return (step + 1) / warmup
    return poly_factor(step, horizon, power)


def make_poly_scheduler(optimizer: torch.optim.Optimizer, horizon: int, power: float, warmup: int = 0):
    """Poly decay (after an optional linear warm-up) applied to every group alike (the peers never decayed the
    heads' lr; we do)."""
    if horizon <= 0:
        raise ValueError(f"the poly horizon must be positive, got {horizon}")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, horizon, power, warmup))
