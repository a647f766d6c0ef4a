"""Agreement of an exported file, evaluated through the C API library, with the Python model."""
from __future__ import annotations

import os

import numpy as np


def _rel(got: np.ndarray, ref: np.ndarray) -> float:
    """``max |got - ref|`` relative to ``max |ref|`` (absolute where ``ref`` is all zero)."""
    ref = np.asarray(ref, dtype=float)
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    diff = float(np.max(np.abs(np.asarray(got, dtype=float) - ref))) if ref.size else 0.0
    return diff / scale if scale > 0 else diff


def check_export(model, path: str | os.PathLike, x) -> float:
    """Largest relative difference between a portable file evaluated by the C API and the model.

    Evaluates the drift and the diffusion, as ensemble means and for every member, and for a ring
    surrogate (:class:`LocalEffectiveSDE`) also the closure ``U``, the diagonal noise ``S`` and the
    resolved drift ``R`` (from the file's program), each relative to its own largest magnitude.

    Parameters
    ----------
    model : EffectiveSDE or LocalEffectiveSDE
        The model the file was written from (``export_surrogate(model, path)``).
    path : str or path-like
        The ``.mss`` file.
    x : array_like, (n, m)
        States (``(n,)`` for ``m = 1``), in the slow variables' units.

    Returns
    -------
    float
        The maximum over all quantities; float64 evaluation orders differ, so expect ~1e-15.

    Raises
    ------
    FileNotFoundError
        When the C API library is not built.
    ValueError
        When the library refuses the file or the states.
    """
    from ._clib import CSurrogate

    x = np.asarray(x, dtype=float)
    x2 = x.reshape(-1, model.dim)
    ring = hasattr(model, "members_unresolved")
    worst = 0.0
    with CSurrogate(path) as c:
        if c.dim != model.dim or c.members != model.members or (c.kind == "ring") != ring:
            raise ValueError(f"{path} holds a {c.kind} surrogate of dim {c.dim} with {c.members} members; the model "
                             f"is a {'ring' if ring else 'sde'} of dim {model.dim} with {model.members} members")
        xin = x2 if ring or model.dim > 1 else x2[:, 0]
        b_m, A_m = np.asarray(model.members_drift(xin)), np.asarray(model.members_diffusion(xin))
        worst = max(_rel(c.drift(x2), b_m.mean(0)), _rel(c.diffusion(x2), A_m.mean(0)))
        for e in range(model.members):
            worst = max(worst, _rel(c.drift(x2, e), b_m[e]), _rel(c.diffusion(x2, e), A_m[e]))
        if ring:
            U = np.asarray(model.members_unresolved(x2))
            S = np.sqrt(np.diagonal(A_m, axis1=-2, axis2=-1))
            u, s = c.closure(x2)
            worst = max(worst, _rel(u, U.mean(0)), _rel(s, np.sqrt((S * S).mean(0))))
            for e in range(model.members):
                u, s = c.closure(x2, e)
                worst = max(worst, _rel(u, U[e]), _rel(s, S[e]))
            worst = max(worst, _rel(c.resolved(x2), model.resolved_drift(x2)))
    return worst
