// Uniform and standard normal variates from Philox output, with elementary functions written
// out as polynomials (fdlibm coefficients) so that
//   * the CPU loop over paths vectorises (no libm calls, no errno), and
//   * host and device produce the same bits for the same (seed, path, step) when the
//     compiler does not contract multiply-adds differently.
// Box-Muller: one Philox4x32 call gives two float64 normals (52-bit uniforms) or four float32
// normals (23-bit uniforms). The smallest uniform is 2^-52, so |z| <= 8.49 (float64), which
// changes no moment of practical interest (P(|Z| > 8.49) ~ 2e-17).
#pragma once
#include <cmath>
#include <cstring>

#include "../config.h"
#include "../elementary.h"
#include "philox.h"

namespace ms {


// sin and cos on [-pi/4, pi/4] (fdlibm k_sin.c / k_cos.c, < 1 ulp there).
MS_INLINE void poly_sincos_kernel(double x, double& s, double& c) {
  constexpr double S1 = -1.66666666666666324348e-01, S2 = 8.33333333332248946124e-03,
                   S3 = -1.98412698298579493134e-04, S4 = 2.75573137070700676789e-06,
                   S5 = -2.50507602534068634195e-08, S6 = 1.58969099521155010221e-10;
  constexpr double C1 = 4.16666666666666019037e-02, C2 = -1.38888888888741095749e-03,
                   C3 = 2.48015872894767294178e-05, C4 = -2.75573143513906633035e-07,
                   C5 = 2.08757232129817482790e-09, C6 = -1.13596475577881948265e-11;
  const double z = x * x;
  s = x + x * z * (S1 + z * (S2 + z * (S3 + z * (S4 + z * (S5 + z * S6)))));
  const double r = z * (C1 + z * (C2 + z * (C3 + z * (C4 + z * (C5 + z * C6)))));
  const double hz = 0.5 * z;
  const double w = 1.0 - hz;
  c = w + (((1.0 - w) - hz) + z * r);
}

MS_INLINE void poly_sincos_kernel(float x, float& s, float& c) {
  constexpr float S1 = -0.166666666416265235595f, S2 = 0.0083333293858894631756f,
                  S3 = -0.000198393348360966317347f, S4 = 0.0000027183114939898219064f;
  constexpr float C0 = -0.499999997251031003120f, C1 = 0.0416666233237390631894f,
                  C2 = -0.00138867637746099294692f, C3 = 0.0000243904487962774090654f;
  const float z = x * x;
  s = x + x * z * (S1 + z * (S2 + z * (S3 + z * S4)));
  c = 1.0f + z * (C0 + z * (C1 + z * (C2 + z * C3)));
}

// ---------------------------------------------------------------------------------------------
// Two uniforms -> two independent N(0,1) (Box-Muller). `ur` supplies the radius (52 or 23 bits),
// `ua` the angle: its top two bits pick the quadrant exactly and the rest give an offset in
// (-pi/4, pi/4), so no argument reduction is ever needed.
MS_INLINE void box_muller(uint64_t ur, uint64_t ua, double& z0, double& z1) {
  // u in (0, 1]: 2 - [1, 2)
  const double u = 2.0 - double_of((ur >> 12) | 0x3ff0000000000000ULL);
  const double r = sqrt(-2.0 * poly_log(u));
  const uint32_t q = static_cast<uint32_t>(ua >> 62);
  // g in [-1/2, 1/2): the next 52 bits
  const double g = double_of(((ua << 2) >> 12) | 0x3ff0000000000000ULL) - 1.5;
  const double x = g * 1.5707963267948966;
  double s, c;
  poly_sincos_kernel(x, s, c);
  // rotate (c, s) by q quarter turns
  const double cq = (q & 1) ? -s : c;
  const double sq = (q & 1) ? c : s;
  const double sign = (q & 2) ? -1.0 : 1.0;
  z0 = r * sign * cq;
  z1 = r * sign * sq;
}

MS_INLINE void box_muller(uint32_t ur, uint32_t ua, float& z0, float& z1) {
  const float u = 2.0f - float_of((ur >> 9) | 0x3f800000u);
  const float r = sqrtf(-2.0f * poly_log(u));
  const uint32_t q = ua >> 30;
  const float g = float_of(((ua << 2) >> 9) | 0x3f800000u) - 1.5f;
  const float x = g * 1.57079632679f;
  float s, c;
  poly_sincos_kernel(x, s, c);
  const float cq = (q & 1) ? -s : c;
  const float sq = (q & 1) ? c : s;
  const float sign = (q & 2) ? -1.0f : 1.0f;
  z0 = r * sign * cq;
  z1 = r * sign * sq;
}

// Normals per Philox call for each precision.
template <class Real>
struct NormalsPerBlock;
template <>
struct NormalsPerBlock<double> {
  static constexpr int value = 2;
};
template <>
struct NormalsPerBlock<float> {
  static constexpr int value = 4;
};

// Fill z[0..n) with the normals of (stream, path, step): block b gives z[NB*b .. NB*b+NB).
template <class Real, class V>
MS_INLINE void normals(const PhiloxKey& key, uint32_t stream, uint32_t path, uint64_t step, int n,
                       V z) {
  constexpr int NB = NormalsPerBlock<Real>::value;
  const int nblocks = (n + NB - 1) / NB;
  // Unrolled so that, for the compile-time n of fixed-size models, the loop disappears and the
  // caller's lane loop still vectorises.
#if defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__)
#pragma GCC unroll 8
#endif
  for (int b = 0; b < nblocks; ++b) {
    const U32x4 r = key(stream, static_cast<uint32_t>(b), path, step);
    const int i0 = NB * b;
    if constexpr (NB == 2) {
      Real a0, a1;
      box_muller((static_cast<uint64_t>(r.v[0]) << 32) | r.v[1],
                 (static_cast<uint64_t>(r.v[2]) << 32) | r.v[3], a0, a1);
      z[i0] = a0;
      if (i0 + 1 < n) z[i0 + 1] = a1;
    } else {
      Real a0, a1;
      box_muller(r.v[0], r.v[1], a0, a1);
      z[i0] = a0;
      if (i0 + 1 < n) z[i0 + 1] = a1;
      if (i0 + 2 < n) {  // the second pair only when it is used
        Real a2, a3;
        box_muller(r.v[2], r.v[3], a2, a3);
        z[i0 + 2] = a2;
        if (i0 + 3 < n) z[i0 + 3] = a3;
      }
    }
  }
}

}  // namespace ms
