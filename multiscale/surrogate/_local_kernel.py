"""The compiled kernel of :class:`LocalEffectiveSDE` (``csrc/include/multiscale/models/local_surrogate.h``):
argument checks, the flat parameter buffer, the resolved part ``R`` compiled just in time, and
per-path statuses turned into errors.

``R`` (a model-language :class:`multiscale.Model`) is generated as C++ by
:mod:`multiscale.models._codegen` and compiled alone with ``csrc/cpu/local_resolved_jit.cpp`` into
a small shared library (a second or two, cached on disk by :func:`multiscale.models._jit.build_library`);
the package's own module runs the launcher and calls R through a function pointer.
"""
from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ._local import LocalEffectiveSDE

_RESOLVED: dict[str, Any] = {}  # dynamics hash -> ctypes library (kept alive: the kernel calls into it)

#: The launcher's lanes per precision and the exported block function of R for them.
_BLOCK_FN = {("float64", 16): "ms_resolved_block_w16_f64", ("float32", 32): "ms_resolved_block_w32_f32"}


def resolved_library(model: Any) -> Any:
    """The just-in-time library of a resolved model's slow drift (compiled once per dynamics, then
    loaded from the disk cache)."""
    from ..models._codegen import dynamics_hash, generate_header
    from ..models._jit import build_library

    key = dynamics_hash(model)
    if key not in _RESOLVED:
        _RESOLVED[key] = build_library(generate_header(model), tu="cpu/local_resolved_jit.cpp",
                                       label=f"resolved model {model.name!r}")
    return _RESOLVED[key]


def resolved_function(sde: "LocalEffectiveSDE", precision: str) -> tuple[int, np.ndarray]:
    """Address of R's block function for the launcher's lanes (0 without R) and R's parameter
    vector ``(n_params,)`` float64."""
    from .. import _core

    if sde.resolved is None:
        return 0, np.zeros(0)
    model = sde.resolved
    values = model.resolve_params(sde.resolved_params)
    pvec = np.ascontiguousarray([values[n] for n in model.param_names], dtype=np.float64)
    lib = resolved_library(model)
    nx, ny = ctypes.c_int(), ctypes.c_int()
    lib.ms_resolved_dims(pvec.ctypes.data_as(ctypes.POINTER(ctypes.c_double)), ctypes.byref(nx), ctypes.byref(ny))
    if nx.value != sde.sites or ny.value != 0:
        raise ValueError(f"resolved model {model.name!r} has {nx.value} slow and {ny.value} fast states in the "
                         f"kernel; the ring has {sde.sites} sites")
    name = _BLOCK_FN.get((precision, _core.local_lanes(precision)))
    if name is None:
        raise RuntimeError(f"no resolved block function for {precision} with {_core.local_lanes(precision)} lanes")
    return int(ctypes.cast(getattr(lib, name), ctypes.c_void_p).value), pvec


def flat_params(sde: "LocalEffectiveSDE") -> np.ndarray:
    """The kernel's parameter buffer: for the drift then the diffusion ensemble, each layer's
    weights ``[members][n_in][n_out]`` then biases ``[members][n_out]`` (the portable order),
    then ``x_mean, x_scale, u_mean, u_scale, s_scale``; float64."""
    parts = []
    for net in (sde.drift_net, sde.diff_net):
        for w, b in zip(net.weights, net.biases):
            parts += [w.detach().double().reshape(-1).numpy(), b.detach().double().reshape(-1).numpy()]
    parts.append(np.array([float(getattr(sde, n)) for n in ("x_mean", "x_scale", "u_mean", "u_scale", "s_scale")]))
    return np.ascontiguousarray(np.concatenate(parts), dtype=np.float64)


def _member_code(sde: "LocalEffectiveSDE", member: Any) -> int:
    if member is None:
        return -1
    if isinstance(member, str):
        if member != "sample":
            raise ValueError(f"member={member!r} must be None (ensemble mean), an integer or 'sample'")
        return -2
    if isinstance(member, (bool, np.bool_)) or not isinstance(member, (int, np.integer)) \
            or not 0 <= int(member) < sde.members:
        raise ValueError(f"member={member!r} must be None, 'sample' or an integer in [0, {sde.members})")
    return int(member)


def check_arguments(sde: "LocalEffectiveSDE", *, t_end: float, dt: float, x0: Any, member: Any,
                    save_every: int) -> tuple[np.ndarray, float, int, int, int]:
    """The checked simulation arguments (both simulations): ``x0`` as ``(n_paths, K)`` float64,
    ``dt``, the step count, ``save_every`` and the kernel's member code; a ValueError names the
    first bad value."""
    from .._checks import integer, positive_finite
    from ..simulate._grid import steps_of

    K = sde.sites
    x = np.array(x0, dtype=np.float64, copy=True)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] != K or x.shape[0] < 1:
        raise ValueError(f"x0 has shape {np.shape(x0)}; expected (n_paths, {K})")
    bad = np.argwhere(~np.isfinite(x))
    if bad.size:
        p, k = bad[0]
        raise ValueError(f"x0 must be finite; x0[{p}, {k}] = {float(x[p, k])!r}")
    if x.shape[0] > 2**32:
        raise ValueError(f"n_paths = {x.shape[0]} exceeds 2**32")
    dt = positive_finite("dt", dt)
    n_steps = steps_of(positive_finite("t_end", t_end), dt, "t_end")
    return x, dt, n_steps, integer("save_every", save_every, 1), _member_code(sde, member)


def simulate(sde: "LocalEffectiveSDE", *, t_end: float, dt: float, x0: Any, seed: int = 0,
             member: int | str | None = "sample", save_every: int = 1, threads: int | None = None,
             precision: Any = "float64") -> np.ndarray:
    """Euler-Maruyama of ``dX = [R(X) + U(X)] dt + S(X) dW`` in the compiled kernel; see
    :meth:`LocalEffectiveSDE.simulate`. Returns ``(n_paths, saves, K)``."""
    from .. import _core
    from .._checks import integer
    from .._checks import seed as check_seed
    from .._errors import SimulationError
    from .._status import Status

    prec = getattr(precision, "value", precision)
    if prec not in ("float64", "float32"):
        raise ValueError(f"precision={precision!r} must be 'float64' or 'float32'")
    K = sde.sites
    x, dt, n_steps, save_every, code = check_arguments(sde, t_end=t_end, dt=dt, x0=x0, member=member,
                                                       save_every=save_every)
    P = x.shape[0]
    nthreads = 0 if threads is None else integer("threads", threads, 1)
    seed = check_seed("seed", seed)
    fn_addr, rparams = resolved_function(sde, prec)
    saves = np.arange(0, n_steps + 1, save_every, dtype=np.int64)
    kernel = _core.simulate_local_float64 if prec == "float64" else _core.simulate_local_float32
    res = kernel(sites=K, stencil=sde.stencil, members=sde.members, member=code,
                 hidden=np.asarray(sde.hidden, dtype=np.int32), params=flat_params(sde), resolved_fn=fn_addr,
                 resolved_params=rparams, dt=dt, n_steps=n_steps, seed=seed, path_offset=0, step_offset=0,
                 x_init=np.ascontiguousarray(x, dtype=np.float64 if prec == "float64" else np.float32),
                 save_steps=saves, threads=nthreads)
    traj = np.asarray(res["trajectory"], dtype=np.float64)
    status = np.asarray(res["status"])
    failed = np.flatnonzero(status != Status.OK)
    if failed.size:
        fs = np.asarray(res["fail_step"])[failed]
        p = int(failed[np.argmin(fs)])  # the earliest failure (lowest path among ties)
        code_p = Status(int(status[p]))
        step = int(res["fail_step"][p])
        last = np.asarray(res["final_state"][p], dtype=np.float64)
        what = "became non-finite" if code_p is Status.NONFINITE else f"stopped ({code_p.name})"
        err = SimulationError(
            f"{failed.size} of {P} paths {what}; the first, path {p}, at step {step + 1} (t = {(step + 1) * dt:g}), "
            f"its last finite state {np.array2string(last, precision=4, threshold=12)}; "
            f"reduce dt={dt!r} or check the surrogate (member={member!r}) there")
        err.trajectory, err.status = traj, status
        raise err
    return traj


def throughput_note(sde: "LocalEffectiveSDE") -> dict[str, float]:
    """Multiply-adds and tanh evaluations of one path step for one member (both networks at
    every site; ``member=None`` evaluates all members): the work the kernel's speed is bound by."""
    sizes = (2 * sde.stencil + 1, *sde.hidden, 1)
    per_net = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    return {"fma_per_path_step_member": float(2 * per_net * sde.sites),
            "tanh_per_path_step_member": float(2 * sum(sde.hidden) * sde.sites)}


__all__ = ["check_arguments", "simulate", "flat_params", "resolved_library", "resolved_function", "throughput_note"]
