// First-passage segments: run one path of the full fast/slow SDE from a given state until a
// linear reaction coordinate xi = w . (x, y) leaves (lo, hi), exceeds a stopping level, or
// the step budget runs out. It is the one propagator behind mean first passage times,
// hitting probabilities and adaptive multilevel splitting (AMS), on CPU and CUDA.
//
// Crossings between steps: with discrete monitoring an Euler path misses excursions across
// a level inside a step, which biases hitting probabilities by O(sqrt(dt)) (REFERENCE problem
// 6: +11% at dt = 1e-3 for the OU escape). Conditional on the two end points, xi over one step
// is approximately a Brownian bridge with variance rate v/dt (v = the step's noise variance of
// xi), which crosses level L (both end points on the same side) with probability
//     p = exp(-2 (L - xi_n)(L - xi_{n+1}) / v)      (e.g. Glasserman, Monte Carlo Methods in
// Financial Engineering, sec. 6.4). The test draws one uniform per level from its own Philox
// stream (STREAM_AUX), so a segment stays a pure function of (seed, segment id, start state).
#pragma once
#include <cmath>

#include "../config.h"
#include "../integrators/euler_maruyama.h"
#include "../rng/philox.h"

namespace ms {

// How a segment ended.
enum Outcome : int8_t {
  OUTCOME_LO = 0,         // xi reached lo (set A)
  OUTCOME_HI = 1,         // xi reached hi (set B)
  OUTCOME_LEVEL = 2,      // xi exceeded the stopping level (AMS branching point), not in A or B
  OUTCOME_MAX_STEPS = 3,  // step budget spent first
  OUTCOME_NONFINITE = 4,  // the state became NaN/inf; the last finite state is kept
};

// Uniform in (0, 1) from 52 random bits.
MS_INLINE double uniform52(uint32_t hi, uint32_t lo) {
  const uint64_t b = ((static_cast<uint64_t>(hi) << 32) | lo) >> 12;
  return (static_cast<double>(b) + 0.5) * (1.0 / 4503599627370496.0);
}

// Probability that a Brownian bridge with total variance v starting at distance d0 > 0 from a
// level and ending at distance d1 > 0 (same side) touches it.
MS_INLINE double bridge_crossing(double d0, double d1, double v) {
  return v > 0.0 ? exp(-2.0 * d0 * d1 / v) : 0.0;
}

struct PassageArgs {
  const double* w;    // [dim] reaction-coordinate weights over (x, y)
  double lo, hi;      // absorbing levels of xi (-inf / +inf: none)
  double level;       // stop as soon as xi > level (+inf: never)
  int64_t max_steps;  // step budget of this segment
  bool bridge;        // Brownian-bridge crossing test at lo and hi
};

// Reaction coordinate of a state.
template <class V>
MS_INLINE double coordinate(const double* w, V x, V y, int nx, int ny) {
  double s = 0.0;
  for (int i = 0; i < nx; ++i) s += w[i] * static_cast<double>(x[i]);
  for (int j = 0; j < ny; ++j) s += w[nx + j] * static_cast<double>(y[j]);
  return s;
}

// Run one segment in place on (x, y). Step numbers continue from `step0` so that a segment
// resumed from a checkpoint draws the same noise. Returns the outcome; `steps` is the number of
// steps taken and `xi_max` the largest xi at the step ends (start included).
template <bool ExactOU, class M, class Real, class V, class S>
MS_INLINE int8_t run_passage(const M& m, const StepCoef<Real>& k, V x, V y, V xn, V yn, const S& s,
                             const PhiloxKey& key, uint32_t path, uint64_t step0,
                             const PassageArgs& a, int64_t& steps, double& xi_max) {
  const int nx = m.nx(), ny = m.ny();
  double xi = coordinate(a.w, x, y, nx, ny);
  xi_max = xi;
  steps = 0;
  if (!(xi == xi)) return OUTCOME_NONFINITE;
  if (xi <= a.lo) return OUTCOME_LO;
  if (xi >= a.hi) return OUTCOME_HI;
  if (xi > a.level) return OUTCOME_LEVEL;
  const bool noisy = model_noisy(m);
  while (steps < a.max_steps) {
    const uint64_t st = step0 + static_cast<uint64_t>(steps);
    if (!em_step<ExactOU>(m, k, x, y, xn, yn, s, key, path, st)) return OUTCOME_NONFINITE;
    ++steps;
    // Variance of the step's noise along w, from the coefficients em_step just evaluated.
    double v = 0.0;
    if (a.bridge && noisy) {
      for (int i = 0; i < nx; ++i) {
        const double c = a.w[i] * static_cast<double>(s.a[i]);
        v += c * c * static_cast<double>(k.dt);
      }
      for (int j = 0; j < ny; ++j) {
        const double sd = (ExactOU && M::kOU) ? static_cast<double>(k.ou_sd) : static_cast<double>(k.sqtau);
        const double c = a.w[nx + j] * static_cast<double>(s.b[j]) * sd;
        v += c * c;
      }
    }
    for (int i = 0; i < nx; ++i) x[i] = xn[i];
    for (int j = 0; j < ny; ++j) y[j] = yn[j];
    const double xi1 = coordinate(a.w, x, y, nx, ny);
    if (xi1 >= a.hi) { xi_max = xi1 > xi_max ? xi1 : xi_max; return OUTCOME_HI; }
    if (xi1 <= a.lo) return OUTCOME_LO;
    if (v > 0.0) {
      const U32x4 r = key(STREAM_AUX, 0u, path, st);
      if (a.hi < INFINITY && uniform52(r.v[0], r.v[1]) < bridge_crossing(a.hi - xi, a.hi - xi1, v)) {
        xi_max = a.hi;
        return OUTCOME_HI;
      }
      if (a.lo > -INFINITY && uniform52(r.v[2], r.v[3]) < bridge_crossing(xi - a.lo, xi1 - a.lo, v))
        return OUTCOME_LO;
    }
    xi = xi1;
    xi_max = xi > xi_max ? xi : xi_max;
    if (xi > a.level) return OUTCOME_LEVEL;
  }
  return OUTCOME_MAX_STEPS;
}

}  // namespace ms
