// The heterogeneous multiscale method's micro-solver as a fused streaming kernel: hold the slow
// state x fixed, run the fast process in fast time,
//     dY = g(x, Y) dtau + beta(x, Y) dV,
// and accumulate time averages without storing any fast trajectory:
//   * f (averaging) or f1 (homogenization): mean, pointwise second moment, batch means
//     (standard errors and the integrated autocorrelation time);
//   * alpha^2 (diagonal slow noise): its mean, the averaged diffusion;
//   * homogenization only: block time-integrals I_b = int_block f0 dtau, whose covariance over
//     blocks divided by the block length estimates the Green-Kubo diffusion
//     2 int_0^inf E[f0(x, Y_0) (x) f0(x, Y_t)] dt (symmetrised);
//   * homogenization with corrector: the drift term E[(grad_x Phi) f0], Phi = int_0^inf E_y f0,
//     as int_0^T_b E[ f0_j(x, Y_0) d/dx_j f0_i(x, Y_t^x) ] dt, the x-derivative taken pathwise by
//     central differences over shadow fast processes at x +- h e_j driven by the same noise and
//     restarted from the main process at every block start.
// One "path" is one (slow point, replica) pair. Everything here is per path and MS_HOST_DEVICE,
// so the CPU lane loop and the CUDA thread run the same code.
#pragma once
#include <cmath>

#include "../config.h"
#include "../integrators/euler_maruyama.h"
#include "../models/common.h"
#include "../rng/normal.h"
#include "../rng/streams.h"

namespace ms {

template <class Real>
struct FrozenCoef {
  Real dtau, sqdtau, ou_decay, ou_sd;
  Real h;  // central-difference step for the corrector
};

template <class Real, class M>
FrozenCoef<Real> make_frozen_coef(const M& m, double dtau, double h) {
  FrozenCoef<Real> k;
  k.dtau = Real(dtau);
  k.sqdtau = Real(std::sqrt(dtau));
  k.ou_decay = Real(1);
  k.ou_sd = Real(0);
  if constexpr (M::kOU) ou_transition(static_cast<double>(m.ou_theta()), dtau, k.ou_decay, k.ou_sd);
  k.h = Real(h);
  return k;
}

// Layout of the per-path double accumulators (offsets in units of one double).
struct FrozenLayout {
  int nx = 0, ny = 0;
  bool homog = false, corrector = false;
  int sum_f, sumsq_f, sum_a2, bsum_f, bm_sum, bm_sumsq;  // nx each
  int sum_f0, bI, I_sum, I_outer;                         // nx, nx, nx, nx*nx
  int I_prev, J_sum, J_outer;                             // nx, nx, nx*nx (pairs of blocks)
  int w0, cJ, c_sum, c_sumsq;                              // nx, nx*nx, nx, nx
  int size;
  MS_HOST_DEVICE static FrozenLayout make(int nx, int ny, bool homog, bool corrector) {
    FrozenLayout L;
    L.nx = nx;
    L.ny = ny;
    L.homog = homog;
    L.corrector = homog && corrector;
    int o = 0;
    L.sum_f = o; o += nx;
    L.sumsq_f = o; o += nx;
    L.sum_a2 = o; o += nx;
    L.bsum_f = o; o += nx;
    L.bm_sum = o; o += nx;
    L.bm_sumsq = o; o += nx;
    L.sum_f0 = o; o += homog ? nx : 0;
    L.bI = o; o += homog ? nx : 0;
    L.I_sum = o; o += homog ? nx : 0;
    L.I_outer = o; o += homog ? nx * nx : 0;
    L.I_prev = o; o += homog ? nx : 0;
    L.J_sum = o; o += homog ? nx : 0;
    L.J_outer = o; o += homog ? nx * nx : 0;
    L.w0 = o; o += L.corrector ? nx : 0;
    L.cJ = o; o += L.corrector ? nx * nx : 0;
    L.c_sum = o; o += L.corrector ? nx : 0;
    L.c_sumsq = o; o += L.corrector ? nx : 0;
    L.size = o;
    return L;
  }
  // Fast state per path: y, then (corrector) shadows y(x + h e_j), y(x - h e_j) for each j.
  MS_HOST_DEVICE int state_size() const { return ny * (1 + (corrector ? 2 * nx : 0)); }
};

// Views needed by one frozen step (all length nx or ny unless stated).
template <class V>
struct FrozenScratch {
  V xs;   // nx: shifted slow state for shadows
  V yn;   // ny
  V g, b; // ny
  V z;    // ny normals
  V f;    // nx
  V fp;   // nx
};

// One fast step of the main process and its shadows, then (Accumulate) accumulation.
// `ys` holds the fast state (FrozenLayout::state_size); `acc` the accumulators; returns false
// if the new state is not finite (the caller then freezes the path). Accumulate and Corrector
// are template parameters, not runtime flags, so that the CPU lane loop has no divergent control
// flow and vectorises. The normals z[0..ny) are drawn by the caller (frozen_normals).
template <bool ExactOU, bool Accumulate, bool Corrector, class M, class Real, class V, class A>
MS_INLINE bool frozen_step(const M& m, const FrozenCoef<Real>& k, const FrozenLayout& L, V x,
                           V ys, const FrozenScratch<V> s, A acc, bool commit_ok) {
  const int nx = m.nx(), ny = m.ny();
  bool ok = fast_update<ExactOU>(m, k.dtau, k.sqdtau, k.ou_decay, k.ou_sd, x, ys, s.yn, s.g, s.b,
                                 s.z, 0);
  const bool commit = ok & commit_ok;
  for (int j = 0; j < ny; ++j) ys[j] = commit ? s.yn[j] : ys[j];
  if constexpr (Corrector) {
    for (int i = 0; i < nx; ++i) s.xs[i] = x[i];
    for (int jx = 0; jx < nx; ++jx) {
      for (int sign = 0; sign < 2; ++sign) {
        const int off = ny * (1 + 2 * jx + sign);
        s.xs[jx] = x[jx] + (sign == 0 ? k.h : -k.h);
        V yshadow = offset(ys, off);
        const bool oks = fast_update<ExactOU>(m, k.dtau, k.sqdtau, k.ou_decay, k.ou_sd, s.xs,
                                              yshadow, s.yn, s.g, s.b, s.z, 0);
        ok = ok & oks;
        const bool c2 = oks & commit;
        for (int j = 0; j < ny; ++j) yshadow[j] = c2 ? s.yn[j] : yshadow[j];
      }
      s.xs[jx] = x[jx];
    }
  }
  if constexpr (Accumulate) {
    // Masked (not branched) accumulation: w is 0 for lanes that did not advance.
    const double w = commit ? 1.0 : 0.0;
    const double dtau = static_cast<double>(k.dtau);
    m.slow_drift(x, ys, s.f);
    m.slow_noise(x, ys, s.fp);
    for (int i = 0; i < nx; ++i) {
      const double fi = w * static_cast<double>(s.f[i]);
      const double ai = static_cast<double>(s.fp[i]);
      acc[L.sum_f + i] += fi;
      acc[L.sumsq_f + i] += fi * fi;
      acc[L.bsum_f + i] += fi;
      acc[L.sum_a2 + i] += w * ai * ai;
    }
    if constexpr (M::kScaling == Scaling::kHomogenization) {
      m.slow_drift0(x, ys, s.f);
      for (int i = 0; i < nx; ++i) {
        const double f0 = w * static_cast<double>(s.f[i]);
        acc[L.sum_f0 + i] += f0;
        acc[L.bI + i] += f0 * dtau;
      }
      if constexpr (Corrector) {
        const double inv2h = 0.5 / static_cast<double>(k.h);
        for (int i = 0; i < nx; ++i) s.xs[i] = x[i];
        for (int jx = 0; jx < nx; ++jx) {
          s.xs[jx] = x[jx] + k.h;
          m.slow_drift0(s.xs, offset(ys, ny * (1 + 2 * jx)), s.f);
          s.xs[jx] = x[jx] - k.h;
          m.slow_drift0(s.xs, offset(ys, ny * (2 + 2 * jx)), s.fp);
          s.xs[jx] = x[jx];
          for (int i = 0; i < nx; ++i)
            acc[L.cJ + i * nx + jx] +=
                w * (static_cast<double>(s.f[i]) - static_cast<double>(s.fp[i])) * inv2h * dtau;
        }
      }
    }
  }
  return ok;
}

// The fast normals of (path, step): z[0..ny). Each Philox block yields a Box-Muller pair; with a
// single fast variable, steps 2q and 2q+1 share the pair of counter q (nothing is wasted),
// otherwise step s uses blocks 0.. of counter s. Either way the noise is a pure function of
// (seed, path, step).
//
// Refill (a template argument, uniform over a CPU lane loop, so the loop has no branch) draws the
// pair of counter step/2 and keeps its second normal in `cache`; otherwise the cache is used.
// The launcher refills on even steps and whenever the cache is stale (first step of a call).
template <bool Refill, class Real, class V>
MS_INLINE void frozen_normals(const PhiloxKey& key, uint32_t path, uint64_t step, int ny, V z,
                              Real& cache) {
  if (ny == 1) {
    if constexpr (Refill) {
      Real a0, a1;
      const U32x4 r = key(STREAM_FROZEN, 0, path, step >> 1);
      if constexpr (NormalsPerBlock<Real>::value == 2) {
        box_muller((static_cast<uint64_t>(r.v[0]) << 32) | r.v[1],
                   (static_cast<uint64_t>(r.v[2]) << 32) | r.v[3], a0, a1);
      } else {
        box_muller(r.v[0], r.v[1], a0, a1);
      }
      z[0] = (step & 1) ? a1 : a0;
      cache = a1;
    } else {
      z[0] = cache;
    }
  } else {
    normals<Real>(key, STREAM_FROZEN, path, step, ny, z);
  }
}

// Start of a block: shadows restart from the main fast state and the corrector weight is
// f0(x, Y_block_start). The block's derivative integral starts with the lag-0 term at half
// weight (trapezoid rule; the per-step terms that follow are right end points), which removes
// the O(dtau) bias of a plain Riemann sum. Called when accumulation starts and after every
// batch close.
template <class M, class Real, class V, class A>
MS_INLINE void frozen_block_start(const M& m, const FrozenCoef<Real>& k, const FrozenLayout& L,
                                  V x, V ys, const FrozenScratch<V>& s, A acc) {
  if constexpr (M::kScaling == Scaling::kHomogenization) {
    if (!L.corrector) return;
    const int nx = m.nx(), ny = m.ny();
    for (int c = 1; c <= 2 * nx; ++c)
      for (int j = 0; j < ny; ++j) ys[c * ny + j] = ys[j];
    m.slow_drift0(x, ys, s.f);
    for (int i = 0; i < nx; ++i) acc[L.w0 + i] = static_cast<double>(s.f[i]);
    const double half = 0.5 * static_cast<double>(k.dtau) * 0.5 / static_cast<double>(k.h);
    for (int i = 0; i < nx; ++i) s.xs[i] = x[i];
    for (int jx = 0; jx < nx; ++jx) {
      s.xs[jx] = x[jx] + k.h;
      m.slow_drift0(s.xs, ys, s.f);
      s.xs[jx] = x[jx] - k.h;
      m.slow_drift0(s.xs, ys, s.fp);
      s.xs[jx] = x[jx];
      for (int i = 0; i < nx; ++i)
        acc[L.cJ + i * nx + jx] = (static_cast<double>(s.f[i]) - static_cast<double>(s.fp[i])) * half;
    }
  } else {
    (void)m, (void)k, (void)L, (void)x, (void)ys, (void)s, (void)acc;
  }
}

// End of batch number `batch_index` (0-based, within the replica) of `batch_len` accumulated
// steps: fold it into the batch statistics. Green-Kubo block integrals are also paired
// (blocks 2k and 2k+1): the covariance of blocks of length T and of 2T gives the Richardson
// extrapolation D = 2 D(2T) - D(T), free of the O(1/T) bias of Var(I_T)/T.
template <class M, class A>
MS_INLINE void frozen_batch_close(const M& m, const FrozenLayout& L, int64_t batch_len,
                                  int64_t batch_index, A acc) {
  const int nx = m.nx();
  const double inv = 1.0 / static_cast<double>(batch_len);
  for (int i = 0; i < nx; ++i) {
    const double bm = acc[L.bsum_f + i] * inv;
    acc[L.bm_sum + i] += bm;
    acc[L.bm_sumsq + i] += bm * bm;
    acc[L.bsum_f + i] = 0.0;
  }
  if (L.homog) {
    for (int i = 0; i < nx; ++i) acc[L.I_sum + i] += acc[L.bI + i];
    for (int i = 0; i < nx; ++i)
      for (int j = 0; j < nx; ++j) acc[L.I_outer + i * nx + j] += acc[L.bI + i] * acc[L.bI + j];
    if (batch_index % 2 == 0) {
      for (int i = 0; i < nx; ++i) acc[L.I_prev + i] = acc[L.bI + i];
    } else {
      for (int i = 0; i < nx; ++i) acc[L.J_sum + i] += acc[L.I_prev + i] + acc[L.bI + i];
      for (int i = 0; i < nx; ++i)
        for (int j = 0; j < nx; ++j)
          acc[L.J_outer + i * nx + j] +=
              (acc[L.I_prev + i] + acc[L.bI + i]) * (acc[L.I_prev + j] + acc[L.bI + j]);
    }
    for (int i = 0; i < nx; ++i) acc[L.bI + i] = 0.0;
  }
  if (L.corrector) {
    for (int i = 0; i < nx; ++i) {
      double c = 0.0;
      for (int j = 0; j < nx; ++j) c += acc[L.w0 + j] * acc[L.cJ + i * nx + j];
      acc[L.c_sum + i] += c;
      acc[L.c_sumsq + i] += c * c;
    }
    // cJ is re-initialised by frozen_block_start, which always follows a batch close.
  }
}

}  // namespace ms
