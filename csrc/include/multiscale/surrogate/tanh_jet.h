// Taylor-mode jet of the tanh activation: value, first and second derivatives of h = tanh(a)
// along m input directions, and its reverse-mode (vector-Jacobian) product, one network row at
// a time. Training the second-order transition density carries (a, da, d2a) through every
// hidden layer; torch does it in about ten elementwise passes over (rows, m, m, width) arrays
// and twice that backwards, so the step is memory-bound. Here a row's width-vector stays in
// registers and each array is read or written once.
//
//   t   = tanh(a),  s = 1 - t^2,  q = -2 t s          (q = s', the derivative of s in a)
//   dh_k    = s da_k
//   d2h_kl  = s d2a_kl + q da_k da_l                   (d2a = 0 in the first layer)
//
// Layouts (row-major): a, t (w); da, dh (m, w); d2a, d2h (m, m, w). Standard library only.
#pragma once
#include <cstdint>

#include "../config.h"
#include "../elementary.h"

namespace ms::nn {

// One row forward. d2a may be null (a layer whose input is affine in the state).
template <class Real>
MS_HOST_DEVICE inline void tanh_jet_row(int m, int w, const Real* a, const Real* da, const Real* d2a,
                                        Real* t, Real* dh, Real* d2h) {
  for (int j = 0; j < w; ++j) t[j] = poly_tanh(a[j]);
  for (int k = 0; k < m; ++k) {
    const Real* dak = da + k * w;
    Real* dhk = dh + k * w;
    for (int j = 0; j < w; ++j) dhk[j] = (Real(1) - t[j] * t[j]) * dak[j];
    for (int l = 0; l < m; ++l) {
      const Real* dal = da + l * w;
      const Real* d2 = d2a ? d2a + (k * m + l) * w : nullptr;
      Real* o = d2h + (k * m + l) * w;
      for (int j = 0; j < w; ++j) {
        const Real s = Real(1) - t[j] * t[j];
        const Real v = Real(-2) * t[j] * s * dak[j] * dal[j];
        o[j] = d2 ? s * d2[j] + v : v;
      }
    }
  }
}

// One row backward: given the forward's t (w), da, d2a and the output cotangents gt (w),
// gdh (m, w), gd2h (m, m, w), writes ga (w), gda (m, w) and, when d2a is not null, gd2a (m, m, w).
//   ga     = s gt + q sum_k gdh_k da_k + sum_kl gd2h_kl (q d2a_kl + q' da_k da_l),  q' = -2 s (s - 2 t^2)
//   gda_k  = s gdh_k + q sum_l (gd2h_kl + gd2h_lk) da_l
//   gd2a   = s gd2h
template <class Real>
MS_HOST_DEVICE inline void tanh_jet_row_backward(int m, int w, const Real* t, const Real* da, const Real* d2a,
                                                 const Real* gt, const Real* gdh, const Real* gd2h,
                                                 Real* ga, Real* gda, Real* gd2a) {
  for (int j = 0; j < w; ++j) ga[j] = (Real(1) - t[j] * t[j]) * gt[j];
  for (int k = 0; k < m; ++k) {
    const Real* dak = da + k * w;
    const Real* gk = gdh + k * w;
    Real* gdak = gda + k * w;
    for (int j = 0; j < w; ++j) {
      const Real s = Real(1) - t[j] * t[j];
      ga[j] += Real(-2) * t[j] * s * gk[j] * dak[j];
      gdak[j] = s * gk[j];
    }
    for (int l = 0; l < m; ++l) {
      const Real* dal = da + l * w;
      const Real* g2 = gd2h + (k * m + l) * w;
      const Real* g2t = gd2h + (l * m + k) * w;
      const Real* d2 = d2a ? d2a + (k * m + l) * w : nullptr;
      Real* gd2 = d2a ? gd2a + (k * m + l) * w : nullptr;
      for (int j = 0; j < w; ++j) {
        const Real s = Real(1) - t[j] * t[j];
        const Real q = Real(-2) * t[j] * s;
        const Real qp = Real(-2) * s * (s - Real(2) * t[j] * t[j]);
        Real acc = qp * g2[j] * dak[j] * dal[j];
        if (d2) {
          acc += q * g2[j] * d2[j];
          gd2[j] = s * g2[j];
        }
        ga[j] += acc;
        gdak[j] += q * (g2[j] + g2t[j]) * dal[j];
      }
    }
  }
}

}  // namespace ms::nn
