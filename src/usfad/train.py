"""One training loop for every model: mini-batches, Adam, early stopping, a guard.

``loss_fn(batch) -> per-sample losses`` is minimised by Adam over shuffled mini-batches
(memory stays flat in the number of samples). When ``validation_fraction > 0`` a part of
the *training* data is held out and the weights with the lowest validation loss are kept;
training stops after ``patience`` epochs without improvement (``min_steps`` and
``min_patience_steps`` raise ``epochs`` and ``patience`` for a set of few batches per epoch).
A non-finite loss raises :class:`~usfad.errors.TrainingDivergedError` instead of returning
garbage.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from .errors import TrainingDivergedError


@dataclass
class History:
    """Per-epoch losses of one training run."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    steps: int = 0
    seconds: float = 0.0
    stopped_early: bool = False
    #: positions, in the data given to :func:`fit_module`, of the rows held out for validation
    validation_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


@dataclass
class TrainConfig:
    epochs: int = 100
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    validation_fraction: float = 0.1
    patience: int = 10
    max_steps: int | None = None
    #: floors in optimiser steps: ``epochs`` and ``patience`` are raised to cover at least
    #: this many steps when an epoch is only a few batches (a small training set); 0: none
    min_steps: int = 0
    min_patience_steps: int = 0
    warmup_steps: int = 0
    grad_clip: float | None = 10.0
    verbose: bool = False
    desc: str = "training"


def split_validation(n: int, fraction: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Indices of a random train/validation split (no validation when too few samples)."""
    perm = torch.randperm(n, generator=generator)
    n_val = int(round(n * fraction)) if fraction > 0 else 0
    if n - n_val < 2 or n_val < 2:
        return perm, perm[:0]
    return perm[n_val:], perm[:n_val]


def steps_per_epoch(n_rows: int, batch_size: int) -> int:
    """Optimiser steps in one epoch over ``n_rows`` rows (a trailing batch of one row is skipped)."""
    batch_size = max(1, min(batch_size, n_rows))
    full, rest = divmod(n_rows, batch_size)
    return max(1, full + (1 if rest >= 2 else 0))


def epochs_and_patience(config: TrainConfig, n_rows: int) -> tuple[int, int]:
    """``config``'s epochs and patience, raised to its step floors for ``n_rows`` training rows."""
    per_epoch = steps_per_epoch(n_rows, config.batch_size)
    epochs = max(config.epochs, math.ceil(config.min_steps / per_epoch))
    patience = max(config.patience, math.ceil(config.min_patience_steps / per_epoch))
    return epochs, patience


@torch.no_grad()
def batched_mean(loss_fn: Callable[[Tensor], Tensor], data: Tensor, batch_size: int) -> float:
    total = 0.0
    for start in range(0, data.shape[0], batch_size):
        total += float(loss_fn(data[start : start + batch_size]).sum())
    return total / max(data.shape[0], 1)


def fit_module(
    module: nn.Module,
    loss_fn: Callable[[Tensor], Tensor],
    data: Tensor,
    config: TrainConfig,
    generator: torch.Generator,
    on_epoch_end: Callable[[int], None] | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> History:
    """Train ``module`` in place; returns the loss history (best weights restored).

    ``on_epoch_end(epoch)`` is called after every epoch, ``on_step(step, loss)`` after every
    optimiser step (steps counted from 1; ``loss`` is that batch's mean loss): hooks for
    monitoring, e.g. what a layer does step by step (``benchmarks/lu_conditioning.py``)."""
    from tqdm.auto import tqdm

    history = History()
    start_time = time.perf_counter()
    train_idx, val_idx = split_validation(data.shape[0], config.validation_fraction, generator)
    train, val = data[train_idx], data[val_idx]
    history.validation_rows = val_idx.numpy()
    params = [p for p in module.parameters() if p.requires_grad]
    # The fused kernel updates every tensor in one call: on the CPU the per-tensor loop it
    # replaces was a visible share of a small flow's step (benchmarks/results/fit_cost.md).
    fused = all(p.dtype in (torch.float32, torch.float64) for p in params) and bool(params)
    optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay, fused=fused or None)
    # Linear warm-up: Adam's first steps are full-size whatever the gradient's scale, and
    # in high dimension a few of them can push the couplings into a blow-up.
    warmup = max(int(config.warmup_steps), 0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / (warmup + 1)))
    batch_size = max(1, min(config.batch_size, train.shape[0]))
    epochs, patience = epochs_and_patience(config, train.shape[0])
    best, best_state, waited = math.inf, None, 0
    # the bar's length: the epochs max_steps allows, when fewer (early stopping may end it sooner still)
    reachable = epochs
    if config.max_steps is not None:
        reachable = min(epochs, math.ceil(config.max_steps / steps_per_epoch(train.shape[0], config.batch_size)))
    bar = tqdm(range(epochs), total=reachable, desc=config.desc, disable=not config.verbose, leave=False)
    for epoch in bar:
        module.train()
        perm = torch.randperm(train.shape[0], generator=generator)
        total, count = 0.0, 0
        for start in range(0, train.shape[0], batch_size):
            batch = train[perm[start : start + batch_size]]
            if batch.shape[0] < 2 and count > 0:
                continue  # a trailing batch of one adds noise, not signal
            loss = loss_fn(batch).mean()
            if not torch.isfinite(loss):
                raise TrainingDivergedError(
                    f"{config.desc}: the training loss became {loss.item()} at epoch {epoch + 1}, "
                    f"step {history.steps + 1}; try a smaller lr (now {config.lr}) or a smaller clamp"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip is not None:
                nn.utils.clip_grad_norm_(params, config.grad_clip)
            optimizer.step()
            scheduler.step()
            total += loss.item() * batch.shape[0]
            count += batch.shape[0]
            history.steps += 1
            if on_step is not None:
                on_step(history.steps, loss.item())
            if config.max_steps is not None and history.steps >= config.max_steps:
                break
        history.train_loss.append(total / max(count, 1))
        module.eval()
        monitored = history.train_loss[-1]
        if val.shape[0] > 0:
            monitored = batched_mean(loss_fn, val, 1024)
            history.val_loss.append(monitored)
        if on_epoch_end is not None:
            on_epoch_end(epoch)
        bar.set_postfix(loss=f"{history.train_loss[-1]:.4g}", val=f"{monitored:.4g}")
        if math.isfinite(monitored) and monitored < best - 1e-4 * abs(best if math.isfinite(best) else 0):
            best, waited, history.best_epoch = monitored, 0, epoch
            best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        else:
            waited += 1
        if waited >= patience:
            history.stopped_early = True
            break
        if config.max_steps is not None and history.steps >= config.max_steps:
            break
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    history.seconds = time.perf_counter() - start_time
    return history
