"""SGD with poly learning-rate decay, the TPS/DA-VSN/DA-STC recipe (method.md section 4)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class OptimConfig:
    lr: float = 2.5e-4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    head_lr_mult: float = 10.0
    poly_power: float = 0.9
    poly_horizon: int | None = None  # iterations of the poly curve; None: the run's max_steps


def poly_factor(step: int, horizon: int, power: float) -> float:
    """(1 - step / horizon) ** power, held at 0 past the horizon."""
    return (1.0 - min(step, horizon) / horizon) ** power


def make_sgd(model: nn.Module, cfg: OptimConfig) -> torch.optim.SGD:
    """SGD over the model's ``param_groups()`` (backbone at lr, heads at ``head_lr_mult`` x lr)."""
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
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def make_poly_scheduler(optimizer: torch.optim.Optimizer, horizon: int, power: float):
    """Poly decay applied to every group alike (the peers never decayed the heads' lr; we do)."""
    if horizon <= 0:
        raise ValueError(f"the poly horizon must be positive, got {horizon}")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: poly_factor(step, horizon, power))
