// CPU entry points of the frozen-x averaging kernels.
#pragma once
#include "multiscale/frozen_run.h"

namespace ms::cpu {

// Advance every active (point, replica) path; returns true if interrupted.
template <class Real>
bool frozen_average(const FrozenSpec& spec, const FrozenBuffers<Real>& out);

// (accumulator doubles per path, fast-state entries per path) for a model and options.
std::pair<int, int> frozen_sizes(int model_id, const double* params, double eps, bool corrector);

}  // namespace ms::cpu
