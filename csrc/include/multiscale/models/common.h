// Shared vocabulary of the compiled model catalogue.
//
// A model is a plain struct templated on the floating type, holding its runtime parameters.
// All state is read and written through views (v[i]), so the same member functions run in a
// vectorised CPU lane loop and in a CUDA thread. A model provides
//   static constexpr int kNX, kNY       compile-time slow/fast dimension, or -1 if runtime
//   static constexpr Scaling kScaling   how the integrator scales the fast drift and noise
//   static constexpr bool kOU           fast drift is -theta (y - mu(x)) with constant theta
//   static constexpr int kNumParams     length of the parameter vector
//   static M from_params(const double* p, double eps)
//   int nx() const, ny() const
//   slow_drift(x, y, f)   the O(1) slow drift f (averaging) or f1 (homogenization)
//   slow_drift0(x, y, f0) homogenization only: the part multiplied by 1/eps
//   slow_noise(x, y, a)   diagonal slow noise alpha
//   fast_drift(x, y, g)   fast drift g (before the 1/eps or 1/eps^2 factor)
//   fast_noise(x, y, b)   diagonal fast noise beta (before the 1/sqrt(eps) or 1/eps factor)
//   ou_theta(), ou_mean(x, mu)   only when kOU
// Models without fast variables derive from NoFastVariables (catalog.h).
#pragma once
#include <cmath>
#include <type_traits>
#include <utility>

#include "../config.h"
#include "../rng/streams.h"

namespace ms {

enum class Scaling : int {
  kAveraging = 0,       // dY = g/eps dt + b/sqrt(eps) dV
  kHomogenization = 1,  // dX = (f0/eps + f1) dt + a dU, dY = g/eps^2 dt + b/eps dV
  kNone = 2,            // no eps in the integrator (single-scale SDEs, or eps inside the model)
};

constexpr double kSqrt2 = 1.41421356237309504880;
constexpr double kTwoPi = 6.28318530717958647692;

// Whether the model draws noise this run: models may define `bool noisy() const` (e.g. a
// deterministic Lorenz-96 skips its normals); the default is true.
template <class M, class = void>
struct HasNoisy : std::false_type {};
template <class M>
struct HasNoisy<M, std::void_t<decltype(std::declval<const M&>().noisy())>> : std::true_type {};
template <class M>
MS_INLINE bool model_noisy(const M& m) {
  if constexpr (HasNoisy<M>::value) {
    return m.noisy();
  } else {
    (void)m;
    return true;
  }
}

// Surrogates (models/surrogate.h) evaluate their coefficients for a block of paths at once
// (`static constexpr bool kBlockEval`, block_coefficients()) and have a lower-triangular
// m x m slow noise factor (`kNoiseMatrix`); catalogue models define neither.
template <class M, class = void>
struct IsBlockEval : std::false_type {};
template <class M>
struct IsBlockEval<M, std::void_t<decltype(M::kBlockEval)>> : std::bool_constant<M::kBlockEval> {};
template <class M>
constexpr bool block_eval_v = IsBlockEval<std::decay_t<M>>::value;
template <class M, class = void>
struct HasNoiseMatrix : std::false_type {};
template <class M>
struct HasNoiseMatrix<M, std::void_t<decltype(M::kNoiseMatrix)>> : std::bool_constant<M::kNoiseMatrix> {};
template <class M>
constexpr bool noise_matrix_v = HasNoiseMatrix<std::decay_t<M>>::value;

// The Philox stream of a model's Brownian increments: STREAM_DYNAMICS, or the model's
// `static constexpr uint32_t kNoiseStream` (a learned surrogate draws on STREAM_SURROGATE).
template <class M, class = void>
struct NoiseStream : std::integral_constant<uint32_t, STREAM_DYNAMICS> {};
template <class M>
struct NoiseStream<M, std::void_t<decltype(M::kNoiseStream)>> : std::integral_constant<uint32_t, M::kNoiseStream> {};
template <class M>
constexpr uint32_t noise_stream_v = NoiseStream<std::decay_t<M>>::value;

// sin(2 pi t) for any finite t, vectorisable: exact reduction of t to a quarter period, then
// the polynomial kernel shared with the normal generator.
template <class Real>
MS_INLINE Real sin_2pi(Real t);
template <class Real>
MS_INLINE Real cos_2pi(Real t);

}  // namespace ms

#include "../rng/normal.h"

namespace ms {

template <class Real>
MS_INLINE Real sin_2pi(Real t) {
  const Real f = t - floor(t);                      // [0, 1)
  const Real k = floor(Real(4) * f + Real(0.5));    // nearest quarter, 0..4
  const Real r = (f - Real(0.25) * k) * Real(kTwoPi);  // [-pi/4, pi/4]
  Real s, c;
  poly_sincos_kernel(r, s, c);
  const int q = static_cast<int>(k) & 3;
  const Real v = (q & 1) ? c : s;
  return (q & 2) ? -v : v;
}

// cos(2 pi t) by the same reduction: cos(2 pi (k/4 + r')) is c, -s, -c, s for k = 0..3.
template <class Real>
MS_INLINE Real cos_2pi(Real t) {
  const Real f = t - floor(t);
  const Real k = floor(Real(4) * f + Real(0.5));
  const Real r = (f - Real(0.25) * k) * Real(kTwoPi);
  Real s, c;
  poly_sincos_kernel(r, s, c);
  const int q = static_cast<int>(k) & 3;
  const Real v = (q & 1) ? s : c;
  return (q == 1 || q == 2) ? -v : v;
}

}  // namespace ms
