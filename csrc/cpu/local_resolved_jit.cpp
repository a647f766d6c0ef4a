// The resolved tendency R of a hybrid ring surrogate (models/local_surrogate.h), compiled just in
// time from the model language (multiscale/surrogate/_local_kernel.py): the generated model
// header (MS_USER_MODEL_HEADER, multiscale/models/_codegen.py) and C functions over a block of
// paths in [component][lane] layout, which the package's launcher calls through a pointer.
// No Python and no OpenMP: this translation unit is the whole just-in-time build (a second or
// two), and the library is loaded with ctypes.
#include <cmath>
#include <cstdint>

#include "multiscale/config.h"
#include "multiscale/elementary.h"
#include "multiscale/models/common.h"
#include "multiscale/view.h"

#ifndef MS_USER_MODEL_HEADER
#error "MS_USER_MODEL_HEADER (the generated resolved model) must be defined"
#endif
#include MS_USER_MODEL_HEADER

namespace {

#define MS_RESOLVED_ALIAS(ID, T) \
  template <class Real>          \
  using Resolved = T<Real>;
MS_USER_MODEL_LIST(MS_RESOLVED_ALIAS)
#undef MS_RESOLVED_ALIAS

// r [nx][W] = slow drift of the W paths x [nx][W]; the model is rebuilt from its parameters per
// call (a few copies: negligible next to the networks the launcher runs per block).
template <class Real, int W>
void block(const double* params, const Real* x, Real* r) {
  const Resolved<Real> m = Resolved<Real>::from_params(params, 1.0);
  for (int l = 0; l < W; ++l) {
    ms::View<const Real, W> xv{x + l};
    ms::View<Real, W> rv{r + l};
    m.slow_drift(xv, xv, rv);
  }
}

}  // namespace

extern "C" {
__attribute__((visibility("default"))) int ms_resolved_dims(const double* params, int* nx, int* ny) {
  const Resolved<double> m = Resolved<double>::from_params(params, 1.0);
  *nx = m.nx();
  *ny = m.ny();
  return 0;
}
__attribute__((visibility("default"))) void ms_resolved_block_w16_f64(const double* p, const double* x, double* r) {
  block<double, 16>(p, x, r);
}
__attribute__((visibility("default"))) void ms_resolved_block_w32_f32(const double* p, const float* x, float* r) {
  block<float, 32>(p, x, r);
}
__attribute__((visibility("default"))) void ms_resolved_block_w1_f64(const double* p, const double* x, double* r) {
  block<double, 1>(p, x, r);
}
}
