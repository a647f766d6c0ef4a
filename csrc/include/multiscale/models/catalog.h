// The built-in model catalogue: reference problems 1a, 1b, 2, 3a, 3b, 4, 5, 6a and the two-scale
// Lorenz-96 system (equations and exact answers: docs/reference_problems.md). Parameter order here is the order of the Python catalogue
// (multiscale/models/_catalog.py), which also holds names, defaults and descriptions.
#pragma once
#include "common.h"

namespace ms {

// Base of models with no explicit fast variable (ny = 0): the fast part is empty.
struct NoFastVariables {
  template <class V, class W>
  MS_INLINE void fast_drift(V, V, W) const {}
  template <class V, class W>
  MS_INLINE void fast_noise(V, V, W) const {}
};

// Problem 1a: dX = (X - X^3 + c Y) dt + sigma dU,  dY = -(Y - X)/eps dt + sqrt(2/eps) dV.
template <class Real>
struct FastOULinear {
  static constexpr int kNX = 1, kNY = 1, kNumParams = 2;
  static constexpr Scaling kScaling = Scaling::kAveraging;
  static constexpr bool kOU = true;
  Real c, sigma;
  static FastOULinear from_params(const double* p, double) {
    return {Real(p[0]), Real(p[1])};
  }
  MS_INLINE int nx() const { return 1; }
  MS_INLINE int ny() const { return 1; }
  template <class V, class W>
  MS_INLINE void slow_drift(V x, V y, W f) const {
    f[0] = x[0] - x[0] * x[0] * x[0] + c * y[0];
  }
  template <class V, class W>
  MS_INLINE void slow_noise(V, V, W a) const { a[0] = sigma; }
  template <class V, class W>
  MS_INLINE void fast_drift(V x, V y, W g) const { g[0] = -(y[0] - x[0]); }
  template <class V, class W>
  MS_INLINE void fast_noise(V, V, W b) const { b[0] = Real(kSqrt2); }
  MS_INLINE Real ou_theta() const { return Real(1); }
  template <class V, class W>
  MS_INLINE void ou_mean(V x, W mu) const { mu[0] = x[0]; }
};

// Problem 1b: as 1a with coupling c Y^2 (tests the fast variance).
template <class Real>
struct FastOUQuadratic : FastOULinear<Real> {
  static FastOUQuadratic from_params(const double* p, double) {
    FastOUQuadratic m;
    m.c = Real(p[0]);
    m.sigma = Real(p[1]);
    return m;
  }
  template <class V, class W>
  MS_INLINE void slow_drift(V x, V y, W f) const {
    f[0] = x[0] - x[0] * x[0] * x[0] + this->c * y[0] * y[0];
  }
};

// Problem 2: gradient system of H = x^2/2 - a0 x - lam x y + y^4/4 - y^2/2 at unit temperature.
template <class Real>
struct TiltedDoubleWell {
  static constexpr int kNX = 1, kNY = 1, kNumParams = 2;
  static constexpr Scaling kScaling = Scaling::kAveraging;
  static constexpr bool kOU = false;
  Real a0, lam;
  static TiltedDoubleWell from_params(const double* p, double) { return {Real(p[0]), Real(p[1])}; }
  MS_INLINE int nx() const { return 1; }
  MS_INLINE int ny() const { return 1; }
  template <class V, class W>
  MS_INLINE void slow_drift(V x, V y, W f) const { f[0] = a0 - x[0] + lam * y[0]; }
  template <class V, class W>
  MS_INLINE void slow_noise(V, V, W a) const { a[0] = Real(kSqrt2); }
  template <class V, class W>
  MS_INLINE void fast_drift(V x, V y, W g) const {
    g[0] = -(y[0] * y[0] * y[0] - y[0] - lam * x[0]);
  }
  template <class V, class W>
  MS_INLINE void fast_noise(V, V, W b) const { b[0] = Real(kSqrt2); }
};

// Problem 3: dX = -V'(X) dt - (1/eps) p'(X/eps) dt + sqrt(2 sigma) dW, p(y) = A cos(2 pi y).
// Quartic = false: V = x^2/2 (3a); Quartic = true: V = x^4/4 - x^2/2 (3b).
template <class Real, bool Quartic>
struct PeriodicPotential : NoFastVariables {
  static constexpr int kNX = 1, kNY = 0, kNumParams = 2;
  static constexpr Scaling kScaling = Scaling::kNone;
  static constexpr bool kOU = false;
  Real A, sigma, inv_eps, noise, amp;
  // amp = 2 pi A / eps in double, rounded once (as the model language hoists parameter products)
  static PeriodicPotential from_params(const double* p, double eps) {
    return {{}, Real(p[0]), Real(p[1]), Real(1.0 / eps), Real(std::sqrt(2.0 * p[1])),
            Real(kTwoPi * p[0] * (1.0 / eps))};
  }
  MS_INLINE int nx() const { return 1; }
  MS_INLINE int ny() const { return 0; }
  template <class V, class W>
  MS_INLINE void slow_drift(V x, V, W f) const {
    const Real dV = Quartic ? x[0] * x[0] * x[0] - x[0] : x[0];
    // -(1/eps) p'(x/eps) = (2 pi A / eps) sin(2 pi x / eps)
    f[0] = -dV + amp * sin_2pi(x[0] * inv_eps);
  }
  template <class V, class W>
  MS_INLINE void slow_noise(V, V, W a) const { a[0] = noise; }
};

// Problem 4: fast OU noise, homogenization scaling:
//   dX = (h(X) + f(X) Y / eps) dt,  h = -x - x^3,  f = sqrt(1 + x^2);  dY = -Y/eps^2 dt + sqrt(2)/eps dV.
template <class Real>
struct FastOUNoise {
  static constexpr int kNX = 1, kNY = 1, kNumParams = 0;
  static constexpr Scaling kScaling = Scaling::kHomogenization;
  static constexpr bool kOU = true;
  static FastOUNoise from_params(const double*, double) { return {}; }
  MS_INLINE int nx() const { return 1; }
  MS_INLINE int ny() const { return 1; }
  template <class V, class W>
  MS_INLINE void slow_drift(V x, V, W f) const { f[0] = -x[0] - x[0] * x[0] * x[0]; }
  template <class V, class W>
  MS_INLINE void slow_drift0(V x, V y, W f0) const {
    f0[0] = sqrt(Real(1) + x[0] * x[0]) * y[0];
  }
  template <class V, class W>
  MS_INLINE void slow_noise(V, V, W a) const { a[0] = Real(0); }
  template <class V, class W>
  MS_INLINE void fast_drift(V, V y, W g) const { g[0] = -y[0]; }
  template <class V, class W>
  MS_INLINE void fast_noise(V, V, W b) const { b[0] = Real(kSqrt2); }
  MS_INLINE Real ou_theta() const { return Real(1); }
  template <class V, class W>
  MS_INLINE void ou_mean(V, W mu) const { mu[0] = Real(0); }
};

// Problem 5: dX = (X - X^3) dt + sigma dW (single scale; the averaged SDE of 1a with c = 0).
template <class Real>
struct DoubleWell : NoFastVariables {
  static constexpr int kNX = 1, kNY = 0, kNumParams = 1;
  static constexpr Scaling kScaling = Scaling::kNone;
  static constexpr bool kOU = false;
  Real sigma;
  static DoubleWell from_params(const double* p, double) { return {{}, Real(p[0])}; }
  MS_INLINE int nx() const { return 1; }
  MS_INLINE int ny() const { return 0; }
  template <class V, class W>
  MS_INLINE void slow_drift(V x, V, W f) const { f[0] = x[0] - x[0] * x[0] * x[0]; }
  template <class V, class W>
  MS_INLINE void slow_noise(V, V, W a) const { a[0] = sigma; }
};

// Problem 6a: Ornstein-Uhlenbeck dX = -theta X dt + sqrt(2 D) dW.
template <class Real>
struct OrnsteinUhlenbeck : NoFastVariables {
  static constexpr int kNX = 1, kNY = 0, kNumParams = 2;
  static constexpr Scaling kScaling = Scaling::kNone;
  static constexpr bool kOU = false;
  Real theta, noise;
  static OrnsteinUhlenbeck from_params(const double* p, double) {
    return {{}, Real(p[0]), Real(std::sqrt(2.0 * p[1]))};
  }
  MS_INLINE int nx() const { return 1; }
  MS_INLINE int ny() const { return 0; }
  template <class V, class W>
  MS_INLINE void slow_drift(V x, V, W f) const { f[0] = -theta * x[0]; }
  template <class V, class W>
  MS_INLINE void slow_noise(V, V, W a) const { a[0] = noise; }
};

// Two-scale Lorenz-96 (Lorenz 1996; Wilks 2005; Arnold et al. 2013), K slow and J*K fast
// variables on one ring, optional additive noise:
//   dX_k = [-X_{k-1}(X_{k-2} - X_{k+1}) - X_k + F - (h c / b) sum_j Y_{j,k}] dt + sigma_x dU_k
//   dY_{j,k} = [-c b Y_{j+1,k}(Y_{j+2,k} - Y_{j-1,k}) - c Y_{j,k} + (h c / b) X_k] dt + sigma_y dV
// The time-scale ratio is the parameter c (eps is not used).
template <class Real>
struct Lorenz96 {
  static constexpr int kNX = -1, kNY = -1, kNumParams = 8;
  static constexpr Scaling kScaling = Scaling::kNone;
  static constexpr bool kOU = false;
  int K, J;
  Real h, b, c, F, sigma_x, sigma_y, hcb;
  static Lorenz96 from_params(const double* p, double) {
    Lorenz96 m;
    m.K = static_cast<int>(p[0]);
    m.J = static_cast<int>(p[1]);
    m.h = Real(p[2]);
    m.b = Real(p[3]);
    m.c = Real(p[4]);
    m.F = Real(p[5]);
    m.sigma_x = Real(p[6]);
    m.sigma_y = Real(p[7]);
    m.hcb = Real(p[2] * p[4] / p[3]);
    return m;
  }
  MS_INLINE int nx() const { return K; }
  MS_INLINE int ny() const { return K * J; }
  // Deterministic unless a noise amplitude is set: then no normals are drawn at all.
  MS_INLINE bool noisy() const { return sigma_x != Real(0) || sigma_y != Real(0); }
  // Ring neighbours without integer division (the loops below are the hot path; their
  // interiors have affine indices and vectorise over components).
  MS_INLINE static int wrap(int i, int n) { return i < 0 ? i + n : (i >= n ? i - n : i); }
  template <class V, class W>
  MS_INLINE void slow_drift(V x, V y, W f) const {
    for (int k = 0; k < K; ++k) {
      Real s = Real(0);
      for (int j = 0; j < J; ++j) s += y[k * J + j];
      f[k] = -x[wrap(k - 1, K)] * (x[wrap(k - 2, K)] - x[wrap(k + 1, K)]) - x[k] + F - hcb * s;
    }
  }
  template <class V, class W>
  MS_INLINE void slow_noise(V, V, W a) const {
    for (int k = 0; k < K; ++k) a[k] = sigma_x;
  }
  template <class V, class W>
  MS_INLINE void fast_drift(V x, V y, W g) const {
    const int n = K * J;
    const Real cb = c * b;
    auto point = [&](int i, int k) {
      g[i] = -cb * y[wrap(i + 1, n)] * (y[wrap(i + 2, n)] - y[wrap(i - 1, n)]) - c * y[i] + hcb * x[k];
    };
    for (int k = 0; k < K; ++k) {
      const int j0 = k == 0 ? 1 : 0;          // ring ends handled separately
      const int j1 = k == K - 1 ? J - 2 : J;
      const Real forcing = hcb * x[k];
      for (int j = j0; j < j1; ++j) {
        const int i = k * J + j;
        g[i] = -cb * y[i + 1] * (y[i + 2] - y[i - 1]) - c * y[i] + forcing;
      }
    }
    point(0, 0);
    if (n >= 2) point(n - 2, (n - 2) / J);
    point(n - 1, K - 1);
  }
  template <class V, class W>
  MS_INLINE void fast_noise(V, V, W bb) const {
    const int n = K * J;
    for (int i = 0; i < n; ++i) bb[i] = sigma_y;
  }
};

// A 1-D SDE tabulated on knots: drift F and noise S = sqrt(A) piecewise linear in x, linear
// extrapolation of F and constant extrapolation of S beyond the end knots. It is the HMM
// macro-solver of the averaging estimator (multiscale.averaging.AveragedSDE).
// Parameters: [n, x_0..x_{n-1}, F_0..F_{n-1}, S_0..S_{n-1}], knots strictly increasing.
template <class Real>
struct Tabulated1D : NoFastVariables {
  static constexpr int kNX = 1, kNY = 0, kMaxKnots = 128, kNumParams = 1 + 3 * kMaxKnots;
  static constexpr Scaling kScaling = Scaling::kNone;
  static constexpr bool kOU = false;
  int n;
  Real xk[kMaxKnots], fk[kMaxKnots], sk[kMaxKnots];
  static Tabulated1D from_params(const double* p, double) {
    Tabulated1D m;
    m.n = static_cast<int>(p[0]);
    for (int i = 0; i < kMaxKnots; ++i) {
      m.xk[i] = Real(i < m.n ? p[1 + i] : 0.0);
      m.fk[i] = Real(i < m.n ? p[1 + kMaxKnots + i] : 0.0);
      m.sk[i] = Real(i < m.n ? p[1 + 2 * kMaxKnots + i] : 0.0);
    }
    return m;
  }
  MS_INLINE int nx() const { return 1; }
  MS_INLINE int ny() const { return 0; }
  // Index i of the segment [x_i, x_{i+1}] holding v (clamped to the end segments).
  MS_INLINE int segment(Real v) const {
    int lo = 0, hi = n - 1;
    while (hi - lo > 1) {
      const int mid = (lo + hi) / 2;
      if (v < xk[mid]) hi = mid; else lo = mid;
    }
    return lo;
  }
  template <class V, class W>
  MS_INLINE void slow_drift(V x, V, W f) const {
    const int i = segment(x[0]);
    const Real t = (x[0] - xk[i]) / (xk[i + 1] - xk[i]);
    f[0] = fk[i] + t * (fk[i + 1] - fk[i]);
  }
  template <class V, class W>
  MS_INLINE void slow_noise(V x, V, W a) const {
    const int i = segment(x[0]);
    Real t = (x[0] - xk[i]) / (xk[i + 1] - xk[i]);
    t = t < Real(0) ? Real(0) : (t > Real(1) ? Real(1) : t);
    a[0] = sk[i] + t * (sk[i + 1] - sk[i]);
  }
};

// X-macro list: (id, C++ type). The id is the index used by the bindings and Python catalogue.
#define MS_MODEL_LIST(X)                     \
  X(0, ::ms::FastOULinear)                   \
  X(1, ::ms::FastOUQuadratic)                \
  X(2, ::ms::TiltedDoubleWell)               \
  X(3, ::ms::PeriodicPotentialQuadratic)     \
  X(4, ::ms::PeriodicPotentialQuartic)       \
  X(5, ::ms::FastOUNoise)                    \
  X(6, ::ms::DoubleWell)                     \
  X(7, ::ms::OrnsteinUhlenbeck)              \
  X(8, ::ms::Lorenz96)                       \
  X(9, ::ms::Tabulated1D)

template <class Real>
using PeriodicPotentialQuadratic = PeriodicPotential<Real, false>;
template <class Real>
using PeriodicPotentialQuartic = PeriodicPotential<Real, true>;

}  // namespace ms
