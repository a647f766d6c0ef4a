// CUDA entry points. Declared whether or not CUDA was compiled; the bindings only call them
// when MULTISCALE_HAVE_CUDA is defined.
#pragma once
#include <string>

#include "multiscale/frozen_run.h"
#include "multiscale/run.h"

namespace ms::cuda {

int device_count();                 // 0 when no driver/device is usable
std::string device_summary();       // "name (sm_XY, N GiB)" per device, ';'-separated
std::string runtime_version();

template <class Real>
RunResult simulate(const RunSpec& spec, const RunBuffers<Real>& out, int device);

// Frozen-x averaging kernel (see cpu/average_cpu.h).
template <class Real>
bool frozen_average(const FrozenSpec& spec, const FrozenBuffers<Real>& out, int device);

// First-passage segments (see cpu/passage_cpu.h); returns true if should_stop() interrupted.
bool passage(const PassageSpec& spec, const PassageBuffers& out, int device);

// Path-steps throughput probe (no saves, no observables): returns seconds of kernel time.
template <class Real>
double time_kernel(const RunSpec& spec, int device);

}  // namespace ms::cuda
