"""Types of the compiled kernels (``csrc/bindings/module.cpp``); the docstrings live there.

Internal: use the package API. Arrays passed as ``NDArray[...]`` are converted to that dtype and
C order where needed, except the in/out arrays of ``frozen_average_float64`` and ``passage``
(``ystate``, ``acc``, ``steps_done``, ``status``, ``fail_step``, ``state``) and the arrays of
``tanh_jet`` and ``tanh_jet_backward`` (C order, float32 or float64, one dtype), which must
already have it. ``tests/test_core_stub.py`` checks that this file names the module's functions and
their parameters.
"""
from typing import Any, TypedDict

import numpy as np
import numpy.typing as npt

_F64 = npt.NDArray[np.float64]
_I64 = npt.NDArray[np.int64]
_I8 = npt.NDArray[np.int8]

class _BuildInfo(TypedDict):
    version: str
    compiler: str
    cxx_flags: str
    openmp: int | None
    max_threads: int
    simd: str
    lanes_float64: int
    lanes_float32: int
    cuda_compiled: bool
    cuda_architectures: str
    cuda_runtime: str | None
    cuda_devices: int
    cuda_device_names: str
    rng: str

class _Coefficients(TypedDict):
    f: _F64  # (n, nx)
    f0: _F64  # (n, nx)
    a: _F64  # (n, nx)
    g: _F64  # (n, ny)
    b: _F64  # (n, ny)

class _SimulateResult(TypedDict):
    final_state: npt.NDArray[Any]  # (n_paths, dim), float64 or float32
    trajectory: npt.NDArray[Any]  # (n_paths, n_save, dim)
    status: _I8  # (n_paths,) Status codes
    fail_step: _I64  # (n_paths,)
    obs_mean: _F64  # (n_windows, n_obs)
    obs_var: _F64  # (n_windows, n_obs)
    obs_count: _I64  # (n_windows, n_obs)
    hist: _I64  # (n_windows, n_obs, bins + 2)
    interrupted: bool

class _PassageResult(TypedDict):
    outcome: _I8  # (n,) Outcome codes
    steps: _I64  # (n,)
    xi_max: _F64  # (n,)

def build_info() -> _BuildInfo: ...
def status_codes() -> dict[str, int]: ...
def outcome_codes() -> dict[str, int]: ...
def streams() -> dict[str, int]: ...
def model_dims(model_id: int, params: _F64, eps: float) -> tuple[int, int]: ...
def model_coefficients(model_id: int, params: _F64, eps: float, x: _F64, y: _F64) -> _Coefficients: ...
def simulate_float64(
    model_id: int,
    params: _F64,
    eps: float,
    dt: float,
    n_steps: int,
    seed: int,
    path_offset: int,
    step_offset: int,
    x_init: npt.NDArray[np.float64],
    save_steps: _I64,
    exact_ou: bool,
    threads: int,
    obs_vars: npt.NDArray[np.int32],
    obs_shift: _F64,
    window_edges: _I64,
    bins: int,
    lo: _F64,
    hi: _F64,
    device: int,
) -> _SimulateResult: ...
def simulate_float32(
    model_id: int,
    params: _F64,
    eps: float,
    dt: float,
    n_steps: int,
    seed: int,
    path_offset: int,
    step_offset: int,
    x_init: npt.NDArray[np.float32],
    save_steps: _I64,
    exact_ou: bool,
    threads: int,
    obs_vars: npt.NDArray[np.int32],
    obs_shift: _F64,
    window_edges: _I64,
    bins: int,
    lo: _F64,
    hi: _F64,
    device: int,
) -> _SimulateResult: ...
def frozen_average_float64(
    model_id: int,
    params: _F64,
    eps: float,
    x_points: _F64,
    active: npt.NDArray[np.uint8],
    replicas: int,
    seed: int,
    dtau: float,
    burn_steps: int,
    burn_total: int,
    steps: int,
    batch_len: int,
    exact_ou: bool,
    corrector: bool,
    fd_step: float,
    threads: int,
    ystate: _F64,
    acc: _F64,
    steps_done: _I64,
    status: _I8,
    fail_step: _I64,
    device: int,
) -> None: ...
def frozen_sizes(model_id: int, params: _F64, eps: float, corrector: bool) -> tuple[int, int]: ...
def passage(
    model_id: int,
    params: _F64,
    eps: float,
    dt: float,
    exact_ou: bool,
    seed: int,
    state: _F64,
    path_ids: npt.NDArray[np.uint32],
    levels: _F64,
    w: _F64,
    lo: float,
    hi: float,
    max_steps: int,
    bridge: bool,
    threads: int,
    device: int,
) -> _PassageResult: ...
def simulate_surrogate_float64(
    dim: int,
    members: int,
    form: int,
    gradient: bool,
    member: int,
    hidden: npt.NDArray[np.int32],
    params: _F64,
    tables: _F64,
    n_grid: int,
    t_lo: float,
    t_h: float,
    dt: float,
    n_steps: int,
    seed: int,
    path_offset: int,
    step_offset: int,
    x_init: npt.NDArray[np.float64],
    save_steps: _I64,
    threads: int,
    obs_vars: npt.NDArray[np.int32],
    obs_shift: _F64,
    window_edges: _I64,
    bins: int,
    lo: _F64,
    hi: _F64,
    noise_substeps: int,
    device: int,
) -> _SimulateResult: ...
def simulate_surrogate_float32(
    dim: int,
    members: int,
    form: int,
    gradient: bool,
    member: int,
    hidden: npt.NDArray[np.int32],
    params: _F64,
    tables: _F64,
    n_grid: int,
    t_lo: float,
    t_h: float,
    dt: float,
    n_steps: int,
    seed: int,
    path_offset: int,
    step_offset: int,
    x_init: npt.NDArray[np.float32],
    save_steps: _I64,
    threads: int,
    obs_vars: npt.NDArray[np.int32],
    obs_shift: _F64,
    window_edges: _I64,
    bins: int,
    lo: _F64,
    hi: _F64,
    noise_substeps: int,
    device: int,
) -> _SimulateResult: ...
def passage_surrogate(
    dim: int,
    members: int,
    form: int,
    gradient: bool,
    member: int,
    hidden: npt.NDArray[np.int32],
    params: _F64,
    tables: _F64,
    n_grid: int,
    t_lo: float,
    t_h: float,
    dt: float,
    seed: int,
    state: _F64,
    path_ids: npt.NDArray[np.uint32],
    levels: _F64,
    w: _F64,
    lo: float,
    hi: float,
    max_steps: int,
    bridge: bool,
    threads: int,
    device: int,
) -> _PassageResult: ...
class _LocalResult(TypedDict):
    final_state: npt.NDArray[Any]
    trajectory: npt.NDArray[Any]
    status: _I8
    fail_step: _I64
    interrupted: bool

def simulate_local_float64(
    sites: int,
    stencil: int,
    members: int,
    member: int,
    hidden: npt.NDArray[np.int32],
    params: _F64,
    resolved_fn: int,
    resolved_params: _F64,
    dt: float,
    n_steps: int,
    seed: int,
    path_offset: int,
    step_offset: int,
    x_init: npt.NDArray[np.float64],
    save_steps: _I64,
    threads: int,
) -> _LocalResult: ...
def simulate_local_float32(
    sites: int,
    stencil: int,
    members: int,
    member: int,
    hidden: npt.NDArray[np.int32],
    params: _F64,
    resolved_fn: int,
    resolved_params: _F64,
    dt: float,
    n_steps: int,
    seed: int,
    path_offset: int,
    step_offset: int,
    x_init: npt.NDArray[np.float32],
    save_steps: _I64,
    threads: int,
) -> _LocalResult: ...
def local_lanes(dtype: str) -> int: ...

_Real = npt.NDArray[np.float32] | npt.NDArray[np.float64]

def tanh_jet(a: _Real, da: _Real, d2a: _Real | None, threads: int = 1) -> tuple[_Real, _Real, _Real]: ...
def tanh_jet_backward(
    t: _Real, da: _Real, d2a: _Real | None, gt: _Real, gdh: _Real, gd2h: _Real, threads: int = 1
) -> tuple[_Real, _Real, _Real | None]: ...
def elementary(name: str, x: _F64, single: bool) -> _F64: ...
def philox4x32_10(c0: int, c1: int, c2: int, c3: int, k0: int, k1: int) -> tuple[int, int, int, int]: ...
def normals(
    seed: int, path0: int, n_paths: int, step: int, n: int, single: bool, stream: int = 0
) -> npt.NDArray[np.float64] | npt.NDArray[np.float32]: ...
def normals_probe(n_paths: int, n_steps: int, per_step: int, seed: int, threads: int, single: bool) -> float: ...
def exact_sum(values: _F64) -> float: ...
def cuda_time_kernel(
    model_id: int,
    params: _F64,
    eps: float,
    dt: float,
    n_paths: int,
    n_steps: int,
    seed: int,
    exact_ou: bool,
    single: bool,
    device: int,
) -> float: ...
