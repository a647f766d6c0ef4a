// Elementary functions written out as polynomials, host and device, so that the CPU loops
// over paths vectorise (no libm calls, no errno) and CUDA runs the same arithmetic:
//   bit casts, log (fdlibm, < 1 ulp), exp and expm1 (Cody-Waite reduction to |r| <= ln2/2 and
//   the Taylor polynomial of expm1 there), and from them the network activations tanh,
//   softplus (torch's threshold 20) and sigmoid.
// Maximum relative errors measured on [-40, 40] and down to 1e-300 (against NumPy's tanh and
// torch's softplus and sigmoid, in units of the type's epsilon):
//   float64: tanh 1.8, softplus 2.0, sigmoid 2.3 (4.1e-16, 4.4e-16, 5.0e-16);
//   float32: tanh 1.5, softplus 1.4, sigmoid 1.2 (1.8e-7, 1.7e-7, 1.4e-7).
// tests/test_surrogate_kernel.py asserts 7e-16 / 1e-15 (float64) and 4e-7 (float32).
// Standard library only (the exported C++ evaluator includes this file).
#pragma once
#include <cstdint>
#include <cstring>

#include "config.h"

namespace ms {

MS_INLINE uint64_t bits_of(double x) {
#if defined(__CUDA_ARCH__)
  return static_cast<uint64_t>(__double_as_longlong(x));
#else
  uint64_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
#endif
}
MS_INLINE double double_of(uint64_t u) {
#if defined(__CUDA_ARCH__)
  return __longlong_as_double(static_cast<long long>(u));
#else
  double x;
  std::memcpy(&x, &u, sizeof x);
  return x;
#endif
}
MS_INLINE uint32_t bits_of(float x) {
#if defined(__CUDA_ARCH__)
  return static_cast<uint32_t>(__float_as_uint(x));
#else
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
#endif
}
MS_INLINE float float_of(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
#endif
}

// log(x) for normal positive finite x (fdlibm e_log.c reduction and minimax polynomial, < 1 ulp).
MS_INLINE double poly_log(double x) {
  constexpr double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
  constexpr double Lg1 = 6.666666666666735130e-01, Lg2 = 3.999999999940941908e-01,
                   Lg3 = 2.857142874366239149e-01, Lg4 = 2.222219843214978396e-01,
                   Lg5 = 1.818357216161805012e-01, Lg6 = 1.531383769920937332e-01,
                   Lg7 = 1.479819860511658591e-01;
  const uint64_t b = bits_of(x);
  int64_t e = static_cast<int64_t>(b >> 52) - 1023;
  double m = double_of((b & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL);  // [1, 2)
  const bool big = m > 1.4142135623730951;  // reduce to [sqrt(2)/2, sqrt(2))
  m = big ? 0.5 * m : m;
  e = big ? e + 1 : e;
  const double f = m - 1.0;
  const double s = f / (2.0 + f);
  const double dk = static_cast<double>(e);
  const double z = s * s, w = z * z;
  const double t1 = w * (Lg2 + w * (Lg4 + w * Lg6));
  const double t2 = z * (Lg1 + w * (Lg3 + w * (Lg5 + w * Lg7)));
  const double R = t2 + t1;
  const double hfsq = 0.5 * f * f;
  return dk * ln2_hi - ((hfsq - (s * (hfsq + R) + dk * ln2_lo)) - f);
}

MS_INLINE float poly_log(float x) {
  constexpr float ln2_hi = 6.9313812256e-01f, ln2_lo = 9.0580006145e-06f;
  constexpr float Lg1 = 0.66666662693f, Lg2 = 0.40000972152f, Lg3 = 0.28498786688f,
                  Lg4 = 0.24279078841f;
  const uint32_t b = bits_of(x);
  int32_t e = static_cast<int32_t>(b >> 23) - 127;
  float m = float_of((b & 0x007fffffu) | 0x3f800000u);
  const bool big = m > 1.41421356f;
  m = big ? 0.5f * m : m;
  e = big ? e + 1 : e;
  const float f = m - 1.0f;
  const float s = f / (2.0f + f);
  const float dk = static_cast<float>(e);
  const float z = s * s, w = z * z;
  const float t1 = w * (Lg2 + w * Lg4);
  const float t2 = z * (Lg1 + w * Lg3);
  const float R = t2 + t1;
  const float hfsq = 0.5f * f * f;
  return dk * ln2_hi - ((hfsq - (s * (hfsq + R) + dk * ln2_lo)) - f);
}

// ---------------------------------------------------------------------------------------------
// exp(x) = 2^k (1 + e), e = expm1(r), r = x - k ln2, |r| <= ln2 / 2. The shifter trick gives k
// as an integer in the low mantissa bits without a float-to-int conversion (AVX2 has none for
// 64-bit lanes), and 2^k by writing the exponent field. Valid for |x| <= 700 (float: 80).
MS_INLINE void exp_parts(double x, double& two_k, double& e) {
  constexpr double inv_ln2 = 1.44269504088896338700e+00;
  constexpr double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
  constexpr double shifter = 6755399441055744.0;  // 1.5 * 2^52
  const double kd0 = x * inv_ln2 + shifter;
  const uint64_t ki = bits_of(kd0);
  const double kd = kd0 - shifter;
  const double r = (x - kd * ln2_hi) - kd * ln2_lo;
  // expm1 on |r| <= 0.347: Taylor to r^13 (remainder < 2e-17 relative).
  e = r * (1.0 + r * (1.0 / 2 + r * (1.0 / 6 + r * (1.0 / 24 + r * (1.0 / 120 + r * (1.0 / 720 +
      r * (1.0 / 5040 + r * (1.0 / 40320 + r * (1.0 / 362880 + r * (1.0 / 3628800 +
      r * (1.0 / 39916800 + r * (1.0 / 479001600 + r * (1.0 / 6227020800.0)))))))))))));
  two_k = double_of((ki + 1023u) << 52);
}
MS_INLINE void exp_parts(float x, float& two_k, float& e) {
  constexpr float inv_ln2 = 1.44269504f, ln2_hi = 6.9313812256e-01f, ln2_lo = 9.0580006145e-06f;
  constexpr float shifter = 12582912.0f;  // 1.5 * 2^23
  const float kd0 = x * inv_ln2 + shifter;
  const uint32_t ki = bits_of(kd0);
  const float kd = kd0 - shifter;
  const float r = (x - kd * ln2_hi) - kd * ln2_lo;
  e = r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720 +
      r * (1.0f / 5040 + r * (1.0f / 40320))))))));
  two_k = float_of((ki + 127u) << 23);
}

// Largest |x| exp_parts takes: 2^k stays a normal number.
template <class Real>
MS_INLINE constexpr Real exp_limit() {
  return sizeof(Real) == 8 ? Real(700) : Real(80);
}

template <class Real>
MS_INLINE Real poly_exp(Real x) {
  Real t, e;
  exp_parts(x, t, e);
  return t + t * e;
}

template <class Real>
MS_INLINE Real poly_expm1(Real x) {
  Real t, e;
  exp_parts(x, t, e);
  return t * e + (t - Real(1));  // t - 1 is exact for the k that occur
}

// tanh(x) = expm1(2|x|) / (expm1(2|x|) + 2) with the sign of x; |x| is clamped where tanh
// rounds to 1 (float64: 20, float32: 9), which also keeps NaN a NaN.
template <class Real>
MS_INLINE Real poly_tanh(Real x) {
  const Real big = sizeof(Real) == 8 ? Real(20) : Real(9);
  const Real ax = x < Real(0) ? -x : x;
  const Real c = ax > big ? big : ax;
  const Real e = poly_expm1(c + c);
  const Real t = e / (e + Real(2));
  return x < Real(0) ? -t : t;
}

// log1p(t) for t in [0, 1]: log(w) t / (w - 1) with w = 1 + t rounded (Goldberg), exact to a
// few ulp also where t is far below the rounding of 1 + t.
template <class Real>
MS_INLINE Real poly_log1p_unit(Real t) {
  const Real w = Real(1) + t;
  const Real d = w - Real(1);
  const Real q = d == Real(0) ? Real(1) : poly_log(w) / d;
  return t * q;
}

// torch.nn.functional.softplus (beta 1, threshold 20): u for u > 20, else log1p(exp(u)),
// computed as max(u, 0) + log1p(exp(-|u|)).
template <class Real>
MS_INLINE Real softplus(Real u) {
  const Real au = u < Real(0) ? -u : u;
  const Real c = au > exp_limit<Real>() ? exp_limit<Real>() : au;
  const Real v = (u > Real(0) ? u : Real(0)) + poly_log1p_unit(poly_exp(-c));
  return u > Real(20) ? u : v;
}

// sigmoid(u) = 1 / (1 + exp(-u)), the derivative of softplus (1 above torch's threshold).
template <class Real>
MS_INLINE Real sigmoid(Real u) {
  const Real lim = exp_limit<Real>();
  const Real c = u < -lim ? -lim : (u > lim ? lim : u);
  return Real(1) / (Real(1) + poly_exp(-c));
}

template <class Real>
MS_INLINE Real dsoftplus(Real u) {
  return u > Real(20) ? Real(1) : sigmoid(u);
}

}  // namespace ms
