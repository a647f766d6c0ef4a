// CPU entry points of the tanh jet (surrogate/tanh_jet.h) over many rows.
#pragma once
#include <cstdint>

namespace ms::cpu {

template <class Real>
void tanh_jet(int64_t rows, int m, int w, const Real* a, const Real* da, const Real* d2a, Real* t, Real* dh,
              Real* d2h, int threads);

template <class Real>
void tanh_jet_backward(int64_t rows, int m, int w, const Real* t, const Real* da, const Real* d2a,
                       const Real* gt, const Real* gdh, const Real* gd2h, Real* ga, Real* gda, Real* gd2a,
                       int threads);

}  // namespace ms::cpu
