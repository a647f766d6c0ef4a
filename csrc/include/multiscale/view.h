// Strided views: a model reads component i of a path's state as v[i], whatever the layout.
// CPU launchers keep a block of W paths as [component][lane] (Stride = W, compile time, so the
// lane loop vectorises); CUDA keeps per-thread registers (Stride = 1) or a global
// [component][path] array (runtime stride, coalesced).
#pragma once
#include "config.h"

namespace ms {

template <class Real, int Stride>
struct View {
  Real* p;
  MS_INLINE Real& operator[](int i) const { return p[i * Stride]; }
};

// Runtime stride.
template <class Real>
struct View<Real, 0> {
  Real* p;
  int64_t stride;
  MS_INLINE Real& operator[](int i) const { return p[i * stride]; }
};

}  // namespace ms

namespace ms {

// The view of components [off, ...) of another view.
template <class Real, int Stride>
MS_INLINE View<Real, Stride> offset(View<Real, Stride> v, int off) {
  return View<Real, Stride>{&v[off]};
}
template <class Real>
MS_INLINE View<Real, 0> offset(View<Real, 0> v, int off) {
  return View<Real, 0>{&v[off], v.stride};
}

}  // namespace ms
