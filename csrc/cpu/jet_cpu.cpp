// Rows of the tanh jet, split over OpenMP threads (each row is independent, so the numbers do
// not depend on the thread count).
#include "jet_cpu.h"

#include "multiscale/surrogate/tanh_jet.h"

namespace ms::cpu {

template <class Real>
void tanh_jet(int64_t rows, int m, int w, const Real* a, const Real* da, const Real* d2a, Real* t, Real* dh,
              Real* d2h, int threads) {
  const int64_t w1 = w, wm = int64_t(m) * w, wmm = int64_t(m) * m * w;
#pragma omp parallel for schedule(static) num_threads(threads > 0 ? threads : 1) if (threads > 1)
  for (int64_t r = 0; r < rows; ++r)
    nn::tanh_jet_row<Real>(m, w, a + r * w1, da + r * wm, d2a ? d2a + r * wmm : nullptr, t + r * w1, dh + r * wm,
                           d2h + r * wmm);
}

template <class Real>
void tanh_jet_backward(int64_t rows, int m, int w, const Real* t, const Real* da, const Real* d2a,
                       const Real* gt, const Real* gdh, const Real* gd2h, Real* ga, Real* gda, Real* gd2a,
                       int threads) {
  const int64_t w1 = w, wm = int64_t(m) * w, wmm = int64_t(m) * m * w;
#pragma omp parallel for schedule(static) num_threads(threads > 0 ? threads : 1) if (threads > 1)
  for (int64_t r = 0; r < rows; ++r)
    nn::tanh_jet_row_backward<Real>(m, w, t + r * w1, da + r * wm, d2a ? d2a + r * wmm : nullptr, gt + r * w1,
                                    gdh + r * wm, gd2h + r * wmm, ga + r * w1, gda + r * wm,
                                    d2a ? gd2a + r * wmm : nullptr);
}

template void tanh_jet<float>(int64_t, int, int, const float*, const float*, const float*, float*, float*, float*,
                              int);
template void tanh_jet<double>(int64_t, int, int, const double*, const double*, const double*, double*, double*,
                               double*, int);
template void tanh_jet_backward<float>(int64_t, int, int, const float*, const float*, const float*, const float*,
                                       const float*, const float*, float*, float*, float*, int);
template void tanh_jet_backward<double>(int64_t, int, int, const double*, const double*, const double*,
                                        const double*, const double*, const double*, double*, double*, double*,
                                        int);

}  // namespace ms::cpu
