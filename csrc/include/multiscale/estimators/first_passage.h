// First-passage segments: run one path of the full fast/slow SDE from a given state until a
// linear reaction coordinate xi = w . (x, y) leaves (lo, hi), exceeds a stopping level, or
// the step budget runs out. It is the one propagator behind mean first passage times,
// hitting probabilities and adaptive multilevel splitting (AMS), on CPU and CUDA.
//
// Crossings between steps: with discrete monitoring an Euler path misses excursions across
// a level inside a step, which biases hitting probabilities by O(sqrt(dt)) (reference problem
// 6a: +11% at dt = 1e-3 for the OU escape). Conditional on the two end points, xi over one step
// is approximately a Brownian bridge with variance rate v/dt (v = the step's noise variance of
// xi), which crosses level L (both end points on the same side) with probability
//     p = exp(-2 (L - xi_n)(L - xi_{n+1}) / v)      (e.g. Glasserman, Monte Carlo Methods in
// Financial Engineering, sec. 6.4). The test draws one uniform per level from its own Philox
// stream (STREAM_AUX), so a segment stays a pure function of (seed, segment id, start state).
//
// The pieces, in the order every launcher runs them: passage_start decides the start state;
// then per step passage_step (em_step, commit, coordinate, bridge draws) and passage_decide.
// run_passage is that loop for one path (the CUDA launcher's thread); the CPU launcher runs
// the same two calls over SIMD lanes with refill, so both draw the same noise and decide alike.
#pragma once
#include <cmath>

#include "../config.h"
#include "../integrators/euler_maruyama.h"
#include "../rng/normal.h"
#include "../rng/philox.h"
#include "../rng/streams.h"
#include "../status.h"

namespace ms {

// Uniform (b + 1/2) / 2^52 in (0, 1) from the top 52 random bits b, built from the bit pattern
// of a double in [1, 2) (no integer-to-double conversion, so the lane loop vectorises).
MS_INLINE double uniform52(uint32_t hi, uint32_t lo) {
  const uint64_t b = ((static_cast<uint64_t>(hi) << 32) | lo) >> 12;
  return (double_of(b | 0x3ff0000000000000ULL) - 1.0) + 1.1102230246251565e-16;
}

struct PassageArgs {
  const double* w;    // [dim] reaction-coordinate weights over (x, y)
  double lo, hi;      // absorbing levels of xi (-inf / +inf: none)
  double level;       // stop as soon as xi > level (+inf: never)
  int64_t max_steps;  // step budget of this segment
};

// Reaction coordinate of a state.
template <class V>
MS_INLINE double coordinate(const double* w, V x, V y, int nx, int ny) {
  double s = 0.0;
  for (int i = 0; i < nx; ++i) s += w[i] * static_cast<double>(x[i]);
  for (int j = 0; j < ny; ++j) s += w[nx + j] * static_cast<double>(y[j]);
  return s;
}

// Outcome of the start state, or -1 if the segment must run.
MS_INLINE int passage_start(const PassageArgs& a, double xi) {
  if (!(xi == xi)) return OUTCOME_NONFINITE;
  if (xi <= a.lo) return OUTCOME_LO;
  if (xi >= a.hi) return OUTCOME_HI;
  if (xi > a.level) return OUTCOME_LEVEL;
  return a.max_steps > 0 ? -1 : OUTCOME_MAX_STEPS;
}

// Variance along w of one step's noise, from the coefficients em_step just evaluated (slow
// noise a, or the noise matrix of a surrogate, over dt; fast noise b over the fast step or the exact OU standard deviation).
template <bool ExactOU, class M, class Real, class V>
MS_INLINE double step_variance(const M& m, const StepCoef<Real>& k, V a, V b, const double* w) {
  const int nx = m.nx(), ny = m.ny();
  double v = 0.0;
  if constexpr (noise_matrix_v<M>) {  // |S^T w|^2 dt
    for (int j = 0; j < nx; ++j) {
      double c = 0.0;
      for (int i = j; i < nx; ++i) c += w[i] * static_cast<double>(a[i * nx + j]);
      v += c * c * static_cast<double>(k.dt);
    }
  } else {
    for (int i = 0; i < nx; ++i) {
      const double c = w[i] * static_cast<double>(a[i]);
      v += c * c * static_cast<double>(k.dt);
    }
  }
  const double sd = (ExactOU && M::kOU) ? static_cast<double>(k.ou_sd) : static_cast<double>(k.sqtau);
  for (int j = 0; j < ny; ++j) {
    const double c = w[nx + j] * static_cast<double>(b[j]) * sd;
    v += c * c;
  }
  return v;
}

// Whether the Brownian bridge of a step from xi to xi1 (variance v along w) touched hi / lo:
// u < exp(-2 d0 d1 / v), compared as log u < -2 d0 d1 / v with the polynomial log of the normal
// generator, branch-free so that the CPU lane loop vectorises. v = 0 (no bridge, no noise) and
// infinite levels give false; end points already across a level are decided before the draws
// are looked at (passage_decide).
MS_INLINE void bridge_draws(const PassageArgs& a, const PhiloxKey& key, uint32_t path, uint64_t st,
                            double xi, double xi1, double v, bool& touched_hi, bool& touched_lo) {
  const U32x4 r = key(STREAM_AUX, 0u, path, st);
  const double th = -2.0 * (a.hi - xi) * (a.hi - xi1) / v;
  const double tl = -2.0 * (xi - a.lo) * (xi1 - a.lo) / v;
  touched_hi = poly_log(uniform52(r.v[0], r.v[1])) < th;
  touched_lo = poly_log(uniform52(r.v[2], r.v[3])) < tl;
}

// Outcome after a committed step ending at xi1, given the bridge draws, or -1 to go on; updates
// xi_max. `steps` counts the steps taken including this one.
MS_INLINE int passage_decide(const PassageArgs& a, double xi1, bool touched_hi, bool touched_lo, int64_t steps,
                             double& xi_max) {
  if (!(xi1 == xi1)) return OUTCOME_NONFINITE;
  if (xi1 >= a.hi) {
    xi_max = xi1 > xi_max ? xi1 : xi_max;
    return OUTCOME_HI;
  }
  if (xi1 <= a.lo) return OUTCOME_LO;
  if (touched_hi) {
    xi_max = a.hi;
    return OUTCOME_HI;
  }
  if (touched_lo) return OUTCOME_LO;
  xi_max = xi1 > xi_max ? xi1 : xi_max;
  if (xi1 > a.level) return OUTCOME_LEVEL;
  return steps >= a.max_steps ? OUTCOME_MAX_STEPS : -1;
}

// One step of a segment from (x, y), whose coordinate is xi: em_step of step number `st`, the
// commit of a finite step (a failed one leaves (x, y) as they were; selected branch-free so
// that the CPU lane loop vectorises), the coordinate xi1 after it and, with Bridge, the
// crossing draws. Returns false when the step failed (outcome NONFINITE; xi1 and the draws are
// then not to be used). Bridge is false where the test is off or the model has no noise.
template <bool ExactOU, bool Bridge, class M, class Real, class V, class S>
MS_INLINE bool passage_step(const M& m, const StepCoef<Real>& k, V x, V y, V xn, V yn, const S& s,
                            const PhiloxKey& key, uint32_t path, uint64_t st, const PassageArgs& a,
                            double xi, double& xi1, bool& touched_hi, bool& touched_lo) {
  const int nx = m.nx(), ny = m.ny();
  const bool good = em_step<ExactOU>(m, k, x, y, xn, yn, s, key, path, st);
  for (int i = 0; i < nx; ++i) x[i] = good ? xn[i] : x[i];
  for (int j = 0; j < ny; ++j) y[j] = good ? yn[j] : y[j];
  xi1 = coordinate(a.w, x, y, nx, ny);
  touched_hi = false;
  touched_lo = false;
  if constexpr (Bridge) {
    const double v = step_variance<ExactOU>(m, k, s.a, s.b, a.w);
    bridge_draws(a, key, path, st, xi, xi1, v, touched_hi, touched_lo);
  }
  return good;
}

// One path of a block model (W = 1): its coefficients into s.f and s.a. The launcher lays out
// x, f, a and z contiguously (stride-1 views) with the model's work space right after z.
template <class M, class V, class S>
MS_INLINE void block_coefficients_one(const M& m, uint32_t path, V x, const S& s) {
  m.template block_coefficients<1>(m.group_of(path), &x[0], &s.f[0], &s.a[0], &s.z[0] + m.nx() + m.ny());
}

// Run one segment in place on (x, y) for at most `budget` steps, from a state that
// passage_start left undecided (or where an earlier call ran out of budget). `xi` is the
// coordinate of (x, y); `steps` counts the segment's steps so far and numbers the noise, so a
// segment run in several calls draws the noise of one run in a single call; `xi_max` is the
// largest xi at the step ends (start included). Returns the outcome, or -1 when the budget
// ran out first.
template <bool ExactOU, bool Bridge, class M, class Real, class V, class S>
MS_INLINE int run_passage(const M& m, const StepCoef<Real>& k, V x, V y, V xn, V yn, const S& s,
                          const PhiloxKey& key, uint32_t path, const PassageArgs& a, int64_t budget,
                          double& xi, int64_t& steps, double& xi_max) {
  for (int64_t b = 0; b < budget; ++b) {
    double xi1;
    bool th, tl;
    if constexpr (block_eval_v<M>) block_coefficients_one(m, path, x, s);
    if (!passage_step<ExactOU, Bridge>(m, k, x, y, xn, yn, s, key, path, static_cast<uint64_t>(steps), a, xi,
                                       xi1, th, tl))
      return OUTCOME_NONFINITE;  // the last finite state stays
    ++steps;
    const int r = passage_decide(a, xi1, th, tl, steps, xi_max);
    xi = xi1;
    if (r >= 0) return r;
  }
  return -1;
}

}  // namespace ms
