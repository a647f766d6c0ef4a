"""Conversions between times and integer step indices, with errors naming the value."""
from __future__ import annotations

import math

import numpy as np

from .._checks import integer

_REL = 1e-9


def steps_of(t: float, dt: float, what: str) -> int:
    """Number of steps ``t/dt``; raises ``ValueError`` unless it is an integer to within a
    relative 1e-9 of ``t`` (so a positive ``t`` far below ``dt`` is rejected, not rounded to 0)."""
    k = round(t / dt)
    if abs(k * dt - t) > _REL * abs(t):
        raise ValueError(f"{what}={float(t)!r} is not a multiple of dt={float(dt)!r}")
    return int(k)


def save_steps(n_steps: int, dt: float, save_every: int | None, save_times) -> np.ndarray:
    """Step indices at which the state is stored (always ascending, unique)."""
    if save_every is not None and save_times is not None:
        raise ValueError("give save_every or save_times, not both")
    if save_times is not None:
        times = np.atleast_1d(np.asarray(save_times, dtype=float))
        if times.ndim != 1:
            raise ValueError(f"save_times must be one-dimensional, got shape {times.shape}")
        t_end = n_steps * dt
        steps = []
        for t in times:
            if not math.isfinite(t) or t < 0 or t > t_end * (1 + _REL):
                raise ValueError(f"save time {float(t)!r} is outside [0, t_end={t_end!r}]")
            steps.append(steps_of(float(t), dt, "save time"))
        out = np.unique(np.asarray(steps, dtype=np.int64))
        return out
    if save_every is None:
        return np.array([0, n_steps], dtype=np.int64) if n_steps else np.array([0], np.int64)
    save_every = integer("save_every", save_every, 1)  # a number of steps
    if n_steps % save_every:
        raise ValueError(f"save_every={save_every} does not divide the run of {n_steps} steps")
    return np.arange(0, n_steps + 1, save_every, dtype=np.int64)
