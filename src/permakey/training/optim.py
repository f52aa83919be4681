"""Optimisers and the learning-rate schedule, per module.

Every method names its parameter groups (PermaKey: the VAE, each local spatial prediction
network, the PointNet); each group has its own base learning rate. Two optimisers:

- ``torch.optim.Adam`` over the groups: the paper's reading, one Adam per module.
- `SharedCounterAdam`: the authors' TensorFlow code, where one Keras Adam serves the G module
  updates of a training step one after the other. Its iteration counter then advances G times
  per training step, and it drives both Adam's bias correction and the learning-rate schedule.
  Group j (0-based, in update order) at training step t is therefore updated at iteration
  ``n = G * t + j + 1``, with the schedule evaluated at ``n - 1`` (Keras reads the counter
  before incrementing it); with G = 4 and decay every 10,000 iterations the rate decays every
  2,500 training steps. Each module's moment estimates still see one gradient per training
  step, as there. Keras's update also differs from PyTorch's in where epsilon sits:
  ``p -= lr * sqrt(1 - b2^n) / (1 - b1^n) * m / (sqrt(v) + eps)``.

The learning rate is a pure function of the step, set before every optimiser step by
`set_learning_rates`, so resuming needs only the step and the optimiser's moments.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class ParamGroup:
    """Parameters of one module and their base learning rate.

    Attributes:
        name: the module ("vae", "lsp/0", "pointnet", "transporter").
        params: its parameters.
        lr: base learning rate before decay.
        start: training step (0-based) from which the group learns; its learning rate is 0
            before (a warm-up of the other modules), while its Adam moments already follow
            its gradients.
    """

    name: str
    params: list[nn.Parameter]
    lr: float
    start: int = 0


def decay_factor(iteration: int, kind: str, rate: float, steps: int) -> float:
    """Staircase decay factor of the learning rate at an optimiser iteration.

    Args:
        iteration: completed optimiser iterations, >= 0.
        kind: "inverse-time" (1 / (1 + rate * floor(i / steps))), "exponential"
            (rate ** floor(i / steps)) or "none" (1).
        rate: decay rate.
        steps: iterations between two decays.

    Returns:
        factor in (0, 1] by which the base learning rate is multiplied.
    """
    stairs = iteration // steps
    if kind == "inverse-time":
        return 1.0 / (1.0 + rate * stairs)
    if kind == "exponential":
        return rate**stairs
    if kind == "none":
        return 1.0
    raise ValueError(f"unknown learning-rate decay {kind!r}")


class SharedCounterAdam(torch.optim.Optimizer):
    """Keras's Adam with one iteration counter shared by sequential per-group updates.

    See the module docstring. Each group carries ``counter_stride`` (G) and ``counter_offset``
    (j); a parameter updated for the t-th time (t from 1) uses iteration
    ``n = G * (t - 1) + j + 1`` for its bias correction.

    Args:
        groups: parameter groups in update order, each a dict with "params" and "lr".
        betas: Adam's (beta1, beta2).
        eps: Keras's epsilon, added to sqrt(v) before bias correction (1e-7 in Keras).
    """

    def __init__(
        self, groups: list[dict], betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-7
    ) -> None:
        for j, group in enumerate(groups):
            group.setdefault("counter_stride", len(groups))
            group.setdefault("counter_offset", j)
        super().__init__(groups, dict(betas=betas, eps=eps))

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102 - torch.optim.Optimizer.step
        if closure is not None:
            raise ValueError("SharedCounterAdam does not take a closure")
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                n = group["counter_stride"] * (int(state["step"]) - 1) + group["counter_offset"] + 1
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.lerp_(p.grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                alpha = group["lr"] * math.sqrt(1 - beta2**n) / (1 - beta1**n)
                p.addcdiv_(exp_avg, exp_avg_sq.sqrt().add_(group["eps"]), value=-alpha)
        return None


def build_optimizer(
    groups: Iterable[ParamGroup], eps: float, shared_counter: bool = False
) -> torch.optim.Optimizer:
    """Adam over per-module parameter groups.

    Args:
        groups: the method's parameter groups (disjoint).
        eps: Adam's epsilon.
        shared_counter: use `SharedCounterAdam` (the authors' code) instead of torch's Adam.

    Returns:
        the optimiser; each of its param_groups has "name" and "base_lr".
    """
    torch_groups = [
        {"params": g.params, "lr": g.lr, "base_lr": g.lr, "name": g.name, "start": g.start}
        for g in groups
    ]
    if shared_counter:
        return SharedCounterAdam(torch_groups, eps=eps)
    return torch.optim.Adam(torch_groups, eps=eps)


def set_learning_rates(
    optimizer: torch.optim.Optimizer, step: int, kind: str, rate: float, steps: int
) -> dict[str, float]:
    """Sets every group's learning rate for training step ``step`` (0-based) of the schedule.

    A group's rate is 0 before its ``start`` step.

    Returns:
        {group name: learning rate}, for logging.
    """
    rates = {}
    for group in optimizer.param_groups:
        # With a shared counter the schedule runs on optimiser iterations, not training steps.
        iteration = group.get("counter_stride", 1) * step + group.get("counter_offset", 0)
        learning = step >= group.get("start", 0)
        group["lr"] = group["base_lr"] * decay_factor(iteration, kind, rate, steps) * learning
        rates[group["name"]] = group["lr"]
    return rates
