// CPU entry point of the hybrid local ring surrogate (models/local_surrogate.h): the generic
// OpenMP launcher (launch_cpu.h) with that block model. Non-template, so the bindings do not
// compile the numerics.
#pragma once
#include <cstdint>
#include <vector>

#include "multiscale/models/local_surrogate.h"
#include "multiscale/run.h"

namespace ms::cpu {

struct LocalSurrogateArrays {
  LocalSurrogateSpec spec;
  std::vector<double> params;           // flat, LocalSurrogateModel::n_params
  std::uintptr_t resolved_fn = 0;       // ResolvedBlockFn<Real> for the run's Real, or 0 (R = 0)
  std::vector<double> resolved_params;  // the resolved model's parameter vector
};

// Lanes (paths per block) of the launcher for Real: the W of the resolved function.
int local_lanes_float64();
int local_lanes_float32();

// Layout size for a description (false in `valid` when it cannot be laid out).
int64_t local_surrogate_n_params(const LocalSurrogateSpec& spec, bool& valid);

// Throws std::invalid_argument when the arrays do not fit the description (the bindings check).
template <class Real>
RunResult simulate_local(const RunSpec& spec, const LocalSurrogateArrays& a, const RunBuffers<Real>& out);

}  // namespace ms::cpu
