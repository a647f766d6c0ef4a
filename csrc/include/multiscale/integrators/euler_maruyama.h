// One Euler-Maruyama step of a fast/slow SDE as a pure function of (model, state, noise key).
//
//   slow:  x' = x + (f1 + f0/eps) dt + alpha sqrt(dt) z_x               (f0 only in homogenization)
//   fast:  y' = y + g tau + beta sqrt(tau) z_y,   tau = dt, dt/eps, dt/eps^2 (none/averaging/homog.)
//   fast, exact OU (model with g = -theta (y - mu(x)), beta independent of y):
//          y' = mu(x) + e^{-theta tau}(y - mu(x)) + beta sqrt((1 - e^{-2 theta tau})/(2 theta)) z_y
// The exact OU update removes the O(tau) bias of Euler in the fast invariant measure
// (reference problem 1b: +5% fast variance at dt/eps = 0.1). Both updates use the state at the
// start of the step (explicit), so the scheme is Euler-Maruyama in x with weak order 1.
#pragma once
#include <cmath>

#include "../config.h"
#include "../models/common.h"
#include "../rng/normal.h"

namespace ms {

template <class Real>
struct StepCoef {
  Real dt, sqdt;          // slow step and its square root
  Real tau, sqtau;        // fast step in fast time units and its square root
  Real inv_eps;           // factor of f0 in homogenization
  Real ou_decay, ou_sd;   // exact OU: e^{-theta tau}, sqrt((1 - e^{-2 theta tau}) / (2 theta))
  // Block models only: step s draws the sum of the normals of steps s*substeps .. s*substeps +
  // substeps - 1, over sqrt(substeps), i.e. the Brownian increment of a run with step
  // dt / substeps (the step-size check compares both on one Brownian path).
  int substeps = 1;
};

// Exact OU transition over a fast-time step tau for rate theta: decay e^{-theta tau} and
// standard deviation factor sqrt((1 - e^{-2 theta tau}) / (2 theta)) (expm1 keeps it accurate
// for tiny tau). Host side; shared by the full-system and the frozen-x steps.
template <class Real>
void ou_transition(double theta, double tau, Real& decay, Real& sd) {
  decay = Real(std::exp(-theta * tau));
  sd = Real(std::sqrt(-std::expm1(-2.0 * theta * tau) / (2.0 * theta)));
}

// Host-side construction of the step constants.
template <class Real, class M>
StepCoef<Real> make_step_coef(const M& m, double dt, double eps) {
  StepCoef<Real> k;
  double tau = dt;
  if (M::kScaling == Scaling::kAveraging) tau = dt / eps;
  if (M::kScaling == Scaling::kHomogenization) tau = dt / (eps * eps);
  k.dt = Real(dt);
  k.sqdt = Real(std::sqrt(dt));
  k.tau = Real(tau);
  k.sqtau = Real(std::sqrt(tau));
  k.inv_eps = Real(M::kScaling == Scaling::kHomogenization ? 1.0 / eps : 0.0);
  k.ou_decay = Real(1);
  k.ou_sd = Real(0);
  if constexpr (M::kOU) ou_transition(static_cast<double>(m.ou_theta()), tau, k.ou_decay, k.ou_sd);
  return k;
}

// The fast-variable update over a fast-time step tau with x held at its start-of-step value:
// Euler-Maruyama, or the exact OU transition (decay = e^{-theta tau},
// sd = sqrt((1 - e^{-2 theta tau}) / (2 theta))). Normals are z[z0 .. z0 + ny). Shared by the
// full-system step below and by the frozen-x micro-solver (estimators/frozen_average.h).
template <bool ExactOU, class M, class Real, class V, class W>
MS_INLINE bool fast_update(const M& m, Real tau, Real sqtau, Real decay, Real sd, V x, V y, W yn,
                           W g, W b, W z, int z0) {
  const int ny = m.ny();
  bool ok = true;
  m.fast_noise(x, y, b);
  if constexpr (ExactOU && M::kOU) {
    m.ou_mean(x, g);
    for (int j = 0; j < ny; ++j) {
      yn[j] = g[j] + decay * (y[j] - g[j]) + b[j] * sd * z[z0 + j];
      ok = ok & is_finite(yn[j]);
    }
  } else {
    m.fast_drift(x, y, g);
    for (int j = 0; j < ny; ++j) {
      yn[j] = y[j] + g[j] * tau + b[j] * sqtau * z[z0 + j];
      ok = ok & is_finite(yn[j]);
    }
  }
  return ok;
}

// Scratch views a step needs: drift/noise buffers of length nx (f, f0, a; a is nx * nx for
// models with a noise matrix) and ny (g, b), and normals z of length nx + ny.
template <class V>
struct StepScratch {
  V f, f0, a, g, b, z;
};

// Advance (x, y) -> (xn, yn). Returns false if any new component is not finite; the caller
// decides whether to commit (it never commits a non-finite state).
template <bool ExactOU, class M, class Real, class V, class S>
MS_INLINE bool em_step(const M& m, const StepCoef<Real>& k, V x, V y, V xn, V yn, const S& s,
                       const PhiloxKey& key, uint32_t path, uint64_t step) {
  const int nx = m.nx(), ny = m.ny();
  if constexpr (!block_eval_v<M>) {  // block models: the launcher filled f and a for the block
    m.slow_drift(x, y, s.f);
    m.slow_noise(x, y, s.a);
  }
  if (model_noisy(m)) {
    if constexpr (block_eval_v<M>) {
      if (k.substeps > 1) {  // f0 (unused by block models) holds each substep's normals
        const uint64_t r0 = step * static_cast<uint64_t>(k.substeps);
        normals<Real>(key, noise_stream_v<M>, path, r0, nx, s.z);
        for (int r = 1; r < k.substeps; ++r) {
          normals<Real>(key, noise_stream_v<M>, path, r0 + static_cast<uint64_t>(r), nx, s.f0);
          for (int i = 0; i < nx; ++i) s.z[i] += s.f0[i];
        }
        const Real c = Real(1) / sqrt(Real(k.substeps));
        for (int i = 0; i < nx; ++i) s.z[i] *= c;
      } else {
        normals<Real>(key, noise_stream_v<M>, path, step, nx + ny, s.z);
      }
    } else {
      normals<Real>(key, noise_stream_v<M>, path, step, nx + ny, s.z);
    }
  } else {
    for (int i = 0; i < nx + ny; ++i) s.z[i] = Real(0);
  }
  bool ok = true;
  if constexpr (M::kScaling == Scaling::kHomogenization) {
    m.slow_drift0(x, y, s.f0);
    for (int i = 0; i < nx; ++i) {
      xn[i] = x[i] + (s.f[i] + k.inv_eps * s.f0[i]) * k.dt + s.a[i] * k.sqdt * s.z[i];
      ok = ok & is_finite(xn[i]);
    }
  } else if constexpr (noise_matrix_v<M>) {
    for (int i = 0; i < nx; ++i) {  // a holds the lower-triangular factor, a[i * nx + j]
      Real nz = Real(0);
      for (int j = 0; j <= i; ++j) nz += s.a[i * nx + j] * s.z[j];
      xn[i] = x[i] + s.f[i] * k.dt + k.sqdt * nz;
      ok = ok & is_finite(xn[i]);
    }
  } else {
    for (int i = 0; i < nx; ++i) {
      xn[i] = x[i] + s.f[i] * k.dt + s.a[i] * k.sqdt * s.z[i];
      ok = ok & is_finite(xn[i]);
    }
  }
  ok = ok & fast_update<ExactOU>(m, k.tau, k.sqtau, k.ou_decay, k.ou_sd, x, y, yn, s.g, s.b,
                                 s.z, nx);
  return ok;
}

}  // namespace ms
