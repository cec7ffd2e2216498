"""The mean teacher: an exponential moving average of the student that never receives gradients."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMATeacher(nn.Module):
    """Holds a copy of the student updated as ``teacher = m * teacher + (1 - m) * student`` after each step.

    The teacher always stays in eval mode (dropout off, batch norm statistics fixed), also when Lightning
    puts the LightningModule in train mode. Floating-point buffers are averaged like parameters, integer
    buffers (batch norm's step counter) copied.
    """

    def __init__(self, student: nn.Module, momentum: float = 0.999):
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"EMA momentum must lie in [0, 1], got {momentum}")
        self.momentum = momentum
        self.model = copy.deepcopy(student)
        self.model.requires_grad_(False)
        self.model.eval()

    def train(self, mode: bool = True) -> EMATeacher:
        return super().train(False)

    @torch.no_grad()
    def update(self, student: nn.Module) -> None:
        weight = 1.0 - self.momentum
        for mine, theirs in zip(self.model.parameters(), student.parameters(), strict=True):
            mine.lerp_(theirs.detach(), weight)
        for mine, theirs in zip(self.model.buffers(), student.buffers(), strict=True):
            if mine.is_floating_point():
                mine.lerp_(theirs, weight)
            else:
                mine.copy_(theirs)

    @torch.no_grad()
    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)
