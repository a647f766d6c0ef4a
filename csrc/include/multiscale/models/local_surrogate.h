// A hybrid local effective SDE on a ring of K sites as a kernel model (multiscale.surrogate.
// LocalEffectiveSDE): dX = [R(X) + U(X)] dt + S(X) dW with U_k = u(z_k), S_kk = sigma(z_k),
// z_k = (X_{k-s..k+s} - x_mean) / x_scale, the same weight-shared tanh MLP ensembles for every
// site, and a resolved part R (a model-language model compiled just in time, or none).
//
// Like models/surrogate.h it is a block model (kBlockEval): the launcher calls
// block_coefficients() once per step for W paths in SIMD lanes ([component][lane] layout), which
// gathers each site's stencil, runs the shared networks with the layer code of surrogate/mlp.h
// (nn::dense_outputs: every weight one broadcast for all lanes; groups of outputs and a tanh
// with fused multiply-adds tuned for this kernel, below) and adds R. The noise is diagonal (no kNoiseMatrix):
// x' = x + (R + U) dt + S_kk sqrt(dt) z_k, with the normals of (seed, path, step) on the
// SURROGATE stream, normal index = site, as LocalEffectiveSDE.simulate_torch draws them.
//
// Members: k >= 0 that member; kMemberMean the ensemble mean (U = mean U_e, S = sqrt(mean S_e^2));
// kMemberSample path p follows member p mod E (the launcher groups paths by group_of()).
#pragma once
#include <cmath>
#include <cstdint>

#include "../config.h"
#include "../elementary.h"
#include "../rng/streams.h"
#include "../surrogate/mlp.h"
#include "common.h"
#include "surrogate.h"

namespace ms {

// The resolved tendency of a block: x [K][W] -> r [K][W] (W the lanes of the precision, 16 for
// double and 32 for float on the CPU). `params` is the resolved model's parameter vector. Built
// just in time from the model language (csrc/cpu/local_resolved_jit.cpp) and handed over as a
// plain function pointer, so the launcher itself is compiled once, in the package's module. The
// caller picks the function built for the launcher's W (_core.local_lanes).
template <class Real>
using ResolvedBlockFn = void (*)(const double* params, const Real* x, Real* r);

// R through a function pointer; a null pointer is R = 0.
template <class Real>
struct PointerResolved {
  ResolvedBlockFn<Real> fn = nullptr;
  const double* params = nullptr;
  template <int W>
  MS_INLINE void eval(int K, const Real* x, Real* r) const {
    if (fn != nullptr) {
      fn(params, x, r);
      return;
    }
    for (int c = 0; c < K * W; ++c) r[c] = Real(0);
  }
};

// tanh for the ring kernel's hidden layers: poly_tanh's formula (elementary.h: expm1(2|x|) /
// (expm1(2|x|) + 2), the same clamp and reduction) with the polynomial in fused multiply-adds.
// The 2 x (sum of hidden widths) x K tanh of a path step cost about as much as its matrix products,
// and fusing halves the polynomial's operations; the values differ from poly_tanh's by an ulp or
// two (float64 4.5e-16, float32 1.8e-7 relative against tanh).
MS_INLINE double ring_expm1(double x) {
  constexpr double inv_ln2 = 1.44269504088896338700e+00;
  constexpr double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
  constexpr double shifter = 6755399441055744.0;  // 1.5 * 2^52
  const double kd0 = x * inv_ln2 + shifter;
  const uint64_t ki = bits_of(kd0);
  const double kd = kd0 - shifter;
  const double r = (x - kd * ln2_hi) - kd * ln2_lo;
  double p = 1.0 / 6227020800.0;
  p = MS_FMA(p, r, 1.0 / 479001600);
  p = MS_FMA(p, r, 1.0 / 39916800);
  p = MS_FMA(p, r, 1.0 / 3628800);
  p = MS_FMA(p, r, 1.0 / 362880);
  p = MS_FMA(p, r, 1.0 / 40320);
  p = MS_FMA(p, r, 1.0 / 5040);
  p = MS_FMA(p, r, 1.0 / 720);
  p = MS_FMA(p, r, 1.0 / 120);
  p = MS_FMA(p, r, 1.0 / 24);
  p = MS_FMA(p, r, 1.0 / 6);
  p = MS_FMA(p, r, 0.5);
  p = MS_FMA(p, r, 1.0);
  const double e = p * r;
  const double t = double_of((ki + 1023u) << 52);
  return MS_FMA(t, e, t - 1.0);
}
MS_INLINE float ring_expm1(float x) {
  constexpr float inv_ln2 = 1.44269504f, ln2_hi = 6.9313812256e-01f, ln2_lo = 9.0580006145e-06f;
  constexpr float shifter = 12582912.0f;  // 1.5 * 2^23
  const float kd0 = x * inv_ln2 + shifter;
  const uint32_t ki = bits_of(kd0);
  const float kd = kd0 - shifter;
  const float r = (x - kd * ln2_hi) - kd * ln2_lo;
  float p = 1.0f / 40320;
  p = MS_FMA(p, r, 1.0f / 5040);
  p = MS_FMA(p, r, 1.0f / 720);
  p = MS_FMA(p, r, 1.0f / 120);
  p = MS_FMA(p, r, 1.0f / 24);
  p = MS_FMA(p, r, 1.0f / 6);
  p = MS_FMA(p, r, 0.5f);
  p = MS_FMA(p, r, 1.0f);
  const float e = p * r;
  const float t = float_of((ki + 127u) << 23);
  return MS_FMA(t, e, t - 1.0f);
}
template <class Real>
MS_INLINE Real ring_tanh(Real x) {
  const Real big = sizeof(Real) == 8 ? Real(20) : Real(9);
  const Real ax = x < Real(0) ? -x : x;
  const Real c = ax > big ? big : ax;  // tanh rounds to 1 beyond; keeps NaN a NaN
  const Real e = ring_expm1(c + c);
  const Real t = e / (e + Real(2));
  return x < Real(0) ? -t : t;
}

// A dense layer on W lanes with nn::dense_outputs (the same sums in the same order, so the same
// bits as nn::dense), in groups of J outputs sized for the widest vectors the target has: with
// AVX-512 a block's 16 doubles or 32 floats are two registers, and J = 8 outputs (16 accumulators
// of the 32 registers) cover the FMA latency with no remainder for the usual widths (a multiple
// of 8); nn::dense's groups are sized for AVX2 (32 = 10 x 3 + 2 latency-bound single outputs).
template <class Real, int W>
MS_INLINE void ring_dense(const Real* w, const Real* bias, int ni, int no, const Real* h, Real* a) {
#if defined(__AVX512F__) && !defined(__CUDA_ARCH__)
  constexpr int J = 8;
#else
  constexpr int kVec = 32 / static_cast<int>(sizeof(Real));
  constexpr int kRegs = W >= kVec ? W / kVec : 1;
  constexpr int J = W == 1 ? 4 : (12 / kRegs >= 1 ? (12 / kRegs > 8 ? 8 : 12 / kRegs) : 1);
#endif
  int j = 0;
  for (; j + J <= no; j += J) nn::dense_outputs<Real, W, J>(w, bias, ni, no, j, h, a);
  if constexpr (J > 4) {
    for (; j + 4 <= no; j += 4) nn::dense_outputs<Real, W, 4>(w, bias, ni, no, j, h, a);
  }
  for (; j < no; ++j) nn::dense_outputs<Real, W, 1>(w, bias, ni, no, j, h, a);
}

// Member e of a network on W lanes, z [n_in][W] -> out [n_out][W]: nn::forward (surrogate/mlp.h)
// without tangents, with ring_tanh. `work` holds nn::forward_work(L, 0, W) Reals.
template <class Real, int W>
MS_INLINE void ring_forward(const Real* params, const nn::NetLayout& L, int e, const Real* z, Real* out,
                            Real* work) {
  const int64_t span = static_cast<int64_t>(L.max_width()) * W;
  Real* buf[2] = {work, work + span};
  const Real* h = z;
  for (int l = 0; l < L.n_layers; ++l) {
    const int ni = L.sizes[l], no = L.sizes[l + 1];
    const Real* w = params + L.w_off[l] + static_cast<int64_t>(e) * ni * no;
    const Real* b = params + L.b_off[l] + static_cast<int64_t>(e) * no;
    const bool last = l == L.n_layers - 1;
    Real* a = last ? out : buf[l & 1];
    ring_dense<Real, W>(w, b, ni, no, h, a);
    if (last) break;
    const int64_t n_a = static_cast<int64_t>(no) * W;
#pragma omp simd
    for (int64_t c = 0; c < n_a; ++c) a[c] = ring_tanh(a[c]);
    h = a;
  }
}

// The Python layer's description (array sizes are checked there and in make()).
struct LocalSurrogateSpec {
  int sites = 0, stencil = 0, members = 0, member = kMemberMean;
  int n_hidden = 0;
  int hidden[nn::kMaxLayers] = {};
};

template <class Real, class Resolved = PointerResolved<Real>>
struct LocalSurrogateModel {
  static constexpr int kNX = -1;
  static constexpr int kNY = 0;
  static constexpr Scaling kScaling = Scaling::kNone;
  static constexpr bool kOU = false;
  static constexpr bool kBlockEval = true;
  static constexpr uint32_t kNoiseStream = STREAM_SURROGATE;
  static constexpr int kNumParams = 0;

  int K = 0, s = 0, width = 0, E = 0, member = kMemberMean;
  nn::NetLayout drift, diff;
  const Real* p = nullptr;  // flat: drift net, diffusion net (portable order), then 5 scalings
  int64_t o_scale = 0;      // x_mean, x_scale, u_mean, u_scale, s_scale
  int64_t n_params = 0;
  Real x_mean = Real(0), inv_x_scale = Real(1), u_mean = Real(0), u_scale = Real(1), s_scale = Real(1);
  Resolved resolved{};

  static LocalSurrogateModel make(const LocalSurrogateSpec& sp, bool& valid) {
    LocalSurrogateModel M;
    M.K = sp.sites;
    M.s = sp.stencil;
    M.width = 2 * sp.stencil + 1;
    M.E = sp.members;
    M.member = sp.member;
    valid = sp.sites >= 1 && sp.stencil >= 0 && M.width <= sp.sites && sp.members >= 1 && sp.n_hidden >= 1 &&
            sp.n_hidden < nn::kMaxLayers && sp.member >= kMemberSample && sp.member < sp.members;
    if (!valid) return M;
    int sizes[nn::kMaxLayers + 1];
    sizes[0] = M.width;
    for (int l = 0; l < sp.n_hidden; ++l) {
      sizes[l + 1] = sp.hidden[l];
      valid = valid && sp.hidden[l] >= 1;
    }
    sizes[sp.n_hidden + 1] = 1;
    bool ok1 = false, ok2 = false;
    int64_t off = nn::make_layout(M.drift, sp.members, sp.n_hidden + 1, sizes, 0, ok1);
    off = nn::make_layout(M.diff, sp.members, sp.n_hidden + 1, sizes, off, ok2);
    M.o_scale = off;
    M.n_params = off + 5;
    valid = valid && ok1 && ok2;
    return M;
  }

  // Point the model at its parameters (n_params Reals) and its resolved part.
  void bind(const Real* params, Resolved r) {
    p = params;
    resolved = r;
    x_mean = p[o_scale];
    inv_x_scale = Real(1) / p[o_scale + 1];
    u_mean = p[o_scale + 2];
    u_scale = p[o_scale + 3];
    s_scale = p[o_scale + 4];
  }

  MS_HOST_DEVICE int nx() const { return K; }
  MS_HOST_DEVICE int ny() const { return 0; }
  MS_HOST_DEVICE int n_groups() const { return member == kMemberSample ? E : 1; }
  MS_HOST_DEVICE int group_of(uint64_t g) const {
    return member == kMemberSample ? static_cast<int>(g % static_cast<uint64_t>(E)) : 0;
  }
  // Never called (kBlockEval): the interface em_step's other branch compiles against.
  template <class V, class W>
  MS_INLINE void slow_drift(V, V, W) const {}
  template <class V, class W>
  MS_INLINE void slow_noise(V, V, W) const {}
  template <class V, class W>
  MS_INLINE void fast_drift(V, V, W) const {}
  template <class V, class W>
  MS_INLINE void fast_noise(V, V, W) const {}

  // ------------------------------------------------------------------ work space
  struct Work {
    int64_t z, u, raw, accu, accA, net, total;
  };
  MS_HOST_DEVICE Work work_layout(int W) const {
    Work w{};
    int64_t o = 0;
    auto take = [&](int64_t n) {
      const int64_t r = o;
      o += n * W;
      return r;
    };
    w.z = take(width);
    w.u = take(1);
    w.raw = take(1);
    w.accu = take(K);
    w.accA = take(K);
    const int64_t f1 = nn::forward_work(drift, 0, 1), f2 = nn::forward_work(diff, 0, 1);
    w.net = take(f1 > f2 ? f1 : f2);
    w.total = o;
    return w;
  }

  // Site k's standardised stencil z [width][W] from x [K][W] (ring indices wrap).
  template <int W>
  MS_INLINE void gather(int k, const Real* x, Real* z) const {
    for (int j = 0; j < width; ++j) {
      int c = k - s + j;
      c = c < 0 ? c + K : (c >= K ? c - K : c);
      const Real* xc = x + static_cast<int64_t>(c) * W;
      Real* zj = z + static_cast<int64_t>(j) * W;
#pragma omp simd
      for (int l = 0; l < W; ++l) zj[l] = (xc[l] - x_mean) * inv_x_scale;
    }
  }

  // Member e at site k's stencil (in work): unresolved drift u [W] and noise sd [W].
  template <int W>
  MS_INLINE void site_member(int e, Real* work, const Work& wk, Real* u, Real* sd) const {
    const Real* z = work + wk.z;
    Real* net = work + wk.net;
    Real* raw = work + wk.raw;
    ring_forward<Real, W>(p, drift, e, z, u, net);
    ring_forward<Real, W>(p, diff, e, z, raw, net);
    const Real k1 = Real(0.54132485461291810);  // log(e - 1): softplus(k1) = 1
#pragma omp simd
    for (int l = 0; l < W; ++l) {
      u[l] = u_mean + u_scale * u[l];
      sd[l] = s_scale * (softplus(raw[l] + k1) + Real(1e-6));
    }
  }

  // The launchers' entry: drift f [K][W] = R + U and noise a [K][W] = S_kk of the W paths
  // x [K][W] of one block, all in `group`.
  template <int W>
  MS_INLINE void block_coefficients(int group, const Real* x, Real* f, Real* a, Real* work) const {
    const Work wk = work_layout(W);
    Real* u = work + wk.u;
    resolved.template eval<W>(K, x, f);
    if (member != kMemberMean) {
      const int e = member == kMemberSample ? group : member;
      for (int k = 0; k < K; ++k) {
        gather<W>(k, x, work + wk.z);
        site_member<W>(e, work, wk, u, a + static_cast<int64_t>(k) * W);
        Real* fk = f + static_cast<int64_t>(k) * W;
#pragma omp simd
        for (int l = 0; l < W; ++l) fk[l] = fk[l] + u[l];
      }
      return;
    }
    // Ensemble mean, as simulate_torch: U = mean U_e, S = sqrt(mean S_e^2).
    Real* accu = work + wk.accu;
    Real* accA = work + wk.accA;
    for (int c = 0; c < K * W; ++c) accu[c] = accA[c] = Real(0);
    for (int k = 0; k < K; ++k) {
      gather<W>(k, x, work + wk.z);
      Real* au = accu + static_cast<int64_t>(k) * W;
      Real* aA = accA + static_cast<int64_t>(k) * W;
      Real* sd = a + static_cast<int64_t>(k) * W;  // scratch until the mean is formed
      for (int e = 0; e < E; ++e) {
        site_member<W>(e, work, wk, u, sd);
#pragma omp simd
        for (int l = 0; l < W; ++l) {
          au[l] += u[l];
          aA[l] += sd[l] * sd[l];
        }
      }
    }
    const Real inv = Real(1) / Real(E);
#pragma omp simd
    for (int c = 0; c < K * W; ++c) {
      f[c] = f[c] + accu[c] * inv;
      a[c] = sqrt(accA[c] * inv);
    }
  }
};

}  // namespace ms
