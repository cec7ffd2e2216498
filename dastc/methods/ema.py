"""The teacher that produces pseudo-labels: a copy of the student that never receives gradients."""

from __future__ import annotations

import copy

import torch
from torch import nn

TEACHER_MODES = ("ema", "frozen_then_self")


class EMATeacher(nn.Module):
    """Holds a copy of the student updated as ``teacher = m * teacher + (1 - m) * student`` after each step.

    ``mode="ema"`` is the paper's mean teacher (m = ``momentum``, 0.999). ``mode="frozen_then_self"`` is the
    authors' released schedule (docs/method.md, DA-STC teacher and stage 2): the model adaptation started
    from, frozen, for ``switch_step`` adaptation steps, then the student itself (m = 1 before, m = 0 after, so
    the teacher copies the student after every step). :meth:`restart` sets the start: the teacher becomes the
    student's copy and the step count begins there.

    A run that starts from another network with a different head (``model.init_from`` a TPS stage: its ASPP
    classifier does not fit DA-STC's 256-d head, which starts untrained) gets that network, as it was trained,
    as ``initial``: the frozen pseudo-labeller for the first ``switch_step`` adaptation steps, as in the
    authors' loop, so that no pseudo-label ever comes from an untrained classifier. Meanwhile ``model`` follows
    the student (``ema``: averaging it from the start, so the random head has long faded when it takes over;
    ``frozen_then_self``: it copies the student from ``switch_step`` on).

    The teacher always stays in eval mode (dropout off, batch norm statistics fixed), also when Lightning
    puts the LightningModule in train mode. Floating-point buffers are averaged like parameters, integer
    buffers (batch norm's step counter) copied.
    """

    def __init__(
        self, student: nn.Module, momentum: float = 0.999, mode: str = "ema", switch_step: int = 8000
    ):
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"method.teacher.momentum must lie in [0, 1], got {momentum}")
        if mode not in TEACHER_MODES:
            raise ValueError(f"method.teacher.mode must be one of {TEACHER_MODES}, got {mode!r}")
        self.momentum, self.mode, self.switch_step = momentum, mode, switch_step
        self.model = copy.deepcopy(student)
        self.model.requires_grad_(False)
        self.model.eval()
        # Adaptation steps taken since the last restart; a buffer, so checkpoints keep it.
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.initial: nn.Module | None = None
        self.initial_config: dict | None = None  # how to rebuild ``initial`` (checkpoints store it)

    def set_initial(self, network: nn.Module, config: dict | None = None) -> None:
        """Label with ``network`` (frozen, in eval mode) for the first ``switch_step`` adaptation steps."""
        network.requires_grad_(False)
        self.initial, self.initial_config = network.eval(), config

    def labeller(self) -> nn.Module:
        """The network that makes the pseudo-labels now."""
        if self.initial is not None and int(self.steps) < self.switch_step:
            return self.initial
        return self.model

    def train(self, mode: bool = True) -> EMATeacher:
        return super().train(False)

    def momentum_now(self) -> float:
        """The momentum of the next update."""
        if self.mode == "ema":
            return self.momentum
        return 1.0 if int(self.steps) < self.switch_step else 0.0

    @torch.no_grad()
    def update(self, student: nn.Module) -> None:
        weight = 1.0 - self.momentum_now()
        self.steps += 1
        if self.initial is not None and int(self.steps) >= self.switch_step:
            self.initial, self.initial_config = None, None  # done labelling: later checkpoints leave it out
        if weight == 0.0:
            return
        for mine, theirs in zip(self.model.parameters(), student.parameters(), strict=True):
            mine.lerp_(theirs.detach(), weight)
        for mine, theirs in zip(self.model.buffers(), student.buffers(), strict=True):
            if mine.is_floating_point():
                mine.lerp_(theirs, weight)
            else:
                mine.copy_(theirs)

    @torch.no_grad()
    def restart(self, student: nn.Module) -> None:
        """Become a copy of the student and count steps from here (adaptation starts); a frozen initial
        labeller is dropped (the student is what adaptation starts from)."""
        for mine, theirs in zip(self.model.state_dict().values(), student.state_dict().values(), strict=True):
            mine.copy_(theirs)
        self.steps.zero_()
        self.initial, self.initial_config = None, None

    @torch.no_grad()
    def forward(self, *args, **kwargs):
        return self.labeller()(*args, **kwargs)
