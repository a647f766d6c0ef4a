// A learned effective SDE dX = b(X) dt + S(X) dW as a kernel model: the deep ensemble of
// multiscale.EffectiveSDE (tanh MLPs, input/output scaling, every diffusion form, the gradient
// structure b = -A grad U / 2 + div A / 2), evaluated for a block of W paths at once with the
// layer code of surrogate/mlp.h, which the exported C++ evaluator shares.
//
// Unlike a catalogue model, whose drift is a formula per lane, a surrogate's coefficients cost
// a few thousand multiply-adds per path, so the launchers call block_coefficients() once per
// step for the whole block (paths in SIMD lanes, every weight one broadcast for all lanes) and
// em_step then uses them (kBlockEval). The noise factor is a lower-triangular m x m matrix
// (kNoiseMatrix): x' = x + b dt + S sqrt(dt) z.
//
// Members: `member` >= 0 uses that member; kMean the ensemble mean (b = mean b_e,
// S = chol(mean S_e S_e^T), as EffectiveSDE.simulate(member=None)); kSample gives path p the
// member p mod E, and launchers group paths by group_of() so that a block shares one member.
//
// One slow variable may carry tables: per group (member, or the one mean), b and s = S_00 and
// their derivatives on a uniform grid, interpolated by cubic Hermite polynomials; lanes outside
// the grid evaluate the networks (the whole block is then evaluated).
#pragma once
#include <cmath>
#include <cstdint>

#include "../config.h"
#include "../elementary.h"
#include "../surrogate/mlp.h"
#include "../rng/streams.h"
#include "common.h"

namespace ms {

enum SurrogateForm : int { kFormCholesky = 0, kFormDiagonal = 1, kFormScalar = 2 };
enum SurrogateMember : int { kMemberMean = -1, kMemberSample = -2 };

// The Python layer's description of a surrogate (array sizes are checked there).
struct SurrogateSpec {
  int dim = 0, members = 0, form = 0, gradient = 0, member = kMemberMean;
  int n_hidden = 0;
  int hidden[nn::kMaxLayers] = {};
  // tables (dim 1 only): n_grid points from t_lo with spacing t_h, [groups][n_grid][4]
  int64_t n_grid = 0;
  double t_lo = 0.0, t_h = 0.0;
};

template <class Real>
struct SurrogateModel {
  static constexpr int kNX = -1;
  static constexpr int kNY = 0;
  static constexpr Scaling kScaling = Scaling::kNone;
  static constexpr bool kOU = false;
  static constexpr bool kBlockEval = true;
  static constexpr bool kNoiseMatrix = true;
  static constexpr uint32_t kNoiseStream = STREAM_SURROGATE;
  static constexpr int kNumParams = 0;

  int m = 0, E = 0, q = 0, form = 0, member = kMemberMean;
  bool gradient = false;
  nn::NetLayout drift, diff;
  const Real* p = nullptr;  // flat parameters (portable-format order)
  int64_t o_confine = 0, o_x_mean = 0, o_x_scale = 0, o_b_mean = 0, o_b_scale = 0, o_s_scale = 0;
  int64_t n_params = 0;     // Reals the layout needs (the caller checks its buffer against it)
  Real u_scale = Real(0), s_mean = Real(0);
  const Real* table = nullptr;  // [groups][n_grid][4]: b, db/dx, s, ds/dx
  int64_t n_grid = 0;
  Real t_lo = Real(0), t_inv_h = Real(0), t_h = Real(0);

  // Layout from the description; `valid` is false when it cannot be laid out. Scales that
  // depend on parameter values (u_scale, s_mean) are filled by bind().
  static SurrogateModel make(const SurrogateSpec& s, bool& valid) {
    SurrogateModel M;
    M.m = s.dim;
    M.E = s.members;
    M.form = s.form;
    M.gradient = s.gradient != 0;
    M.member = s.member;
    M.q = s.form == kFormCholesky ? s.dim * (s.dim + 1) / 2 : (s.form == kFormDiagonal ? s.dim : 1);
    valid = s.dim >= 1 && s.members >= 1 && s.n_hidden >= 1 && s.n_hidden < nn::kMaxLayers &&
            s.form >= 0 && s.form <= 2 && s.member >= kMemberSample && s.member < s.members;
    if (!valid) return M;
    int sizes[nn::kMaxLayers + 1];
    sizes[0] = s.dim;
    for (int l = 0; l < s.n_hidden; ++l) sizes[l + 1] = s.hidden[l];
    bool ok1 = false, ok2 = false;
    sizes[s.n_hidden + 1] = M.gradient ? 1 : s.dim;
    int64_t off = nn::make_layout(M.drift, s.members, s.n_hidden + 1, sizes, 0, ok1);
    sizes[s.n_hidden + 1] = M.q;
    off = nn::make_layout(M.diff, s.members, s.n_hidden + 1, sizes, off, ok2);
    M.o_confine = off;
    off += s.members;
    M.o_x_mean = off;
    M.o_x_scale = off + s.dim;
    M.o_b_mean = off + 2 * s.dim;
    M.o_b_scale = off + 3 * s.dim;
    M.o_s_scale = off + 4 * s.dim;
    M.n_params = off + 5 * s.dim;
    M.n_grid = s.n_grid;
    M.t_lo = Real(s.t_lo);
    M.t_h = Real(s.t_h);
    M.t_inv_h = s.t_h > 0 ? Real(1.0 / s.t_h) : Real(0);
    valid = ok1 && ok2 && (s.n_grid == 0 || (s.dim == 1 && s.n_grid >= 2 && s.t_h > 0));
    return M;
  }

  // Point the model at its parameters (and tables, or null) and derive the value scales.
  void bind(const Real* params, const Real* tables) {
    p = params;
    table = n_grid > 0 ? tables : nullptr;
    double us = 0.0, sm = 0.0;
    for (int i = 0; i < m; ++i) {
      const double xs = static_cast<double>(p[o_x_scale + i]), bs = static_cast<double>(p[o_b_scale + i]);
      const double ss = static_cast<double>(p[o_s_scale + i]);
      us += bs * xs / (ss * ss);
      sm += ss;
    }
    u_scale = Real(2.0 * us / m);  // EffectiveSDE.u_scale
    s_mean = Real(sm / m);
  }

  MS_HOST_DEVICE int nx() const { return m; }
  MS_HOST_DEVICE int ny() const { return 0; }
  MS_HOST_DEVICE int n_groups() const { return member == kMemberSample ? E : 1; }
  // The group (member) of global path id g: launchers put one group in a block.
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
    int64_t z, dz, raw, draw, u, du, S, dS, accb, accA, be, tf, tS, net, total;
  };
  MS_HOST_DEVICE Work work_layout(int W) const {
    const int nt = gradient ? m : 0;
    const int nd = gradient ? 1 : m;
    const int64_t mm = static_cast<int64_t>(m) * m;
    Work w{};
    int64_t o = 0;
    auto take = [&](int64_t n) {
      const int64_t r = o;
      o += n * W;
      return r;
    };
    w.z = take(m);
    w.dz = take(static_cast<int64_t>(nt) * m);
    w.raw = take(q);
    w.draw = take(static_cast<int64_t>(nt) * q);
    w.u = take(nd);
    w.du = take(static_cast<int64_t>(nt) * nd);
    w.S = take(mm);
    w.dS = take(nt * mm);
    w.accb = take(m);
    w.accA = take(mm);
    w.be = take(m);
    w.tf = take(m);
    w.tS = take(mm);
    const int64_t f1 = nn::forward_work(drift, nt, 1), f2 = nn::forward_work(diff, nt, 1);
    w.net = take(f1 > f2 ? f1 : f2);
    w.total = o;
    return w;
  }

  // ------------------------------------------------------------------ block evaluation
  // Noise factor S [m*m][W] (and with nt > 0 its tangents dS [nt][m*m][W]) of one member from
  // the raw network outputs raw [q][W] (draw [nt][q][W]).
  template <int W>
  MS_INLINE void noise_factor(const Real* raw, int nt, const Real* draw, Real* S, Real* dS) const {
    const int mm = m * m;
    for (int c = 0; c < mm; ++c)
      for (int l = 0; l < W; ++l) S[c * W + l] = Real(0);
    for (int c = 0; c < nt * mm; ++c)
      for (int l = 0; l < W; ++l) dS[c * W + l] = Real(0);
    const Real k1 = Real(0.54132485461291810);  // log(e - 1): softplus(k1) = 1
    if (form == kFormScalar) {
#pragma omp simd
      for (int l = 0; l < W; ++l) {
        const Real u = raw[l] + k1;
        const Real s = s_mean * (softplus(u) + Real(1e-6));
        const Real g = s_mean * dsoftplus(u);
        for (int i = 0; i < m; ++i) S[(i * m + i) * W + l] = s;
        for (int t = 0; t < nt; ++t) {
          const Real ds = g * draw[t * q * W + l];
          for (int i = 0; i < m; ++i) dS[(t * mm + i * m + i) * W + l] = ds;
        }
      }
      return;
    }
    int k = 0;
    for (int r = 0; r < m; ++r) {
      const Real sc = p[o_s_scale + r];
      for (int c = (form == kFormDiagonal ? r : 0); c <= r; ++c, ++k) {
        const int rc = r * m + c;
        if (r == c) {
#pragma omp simd
          for (int l = 0; l < W; ++l) {
            const Real u = raw[k * W + l] + k1;
            S[rc * W + l] = sc * (softplus(u) + Real(1e-6));
            if (nt > 0) {
              const Real g = sc * dsoftplus(u);
              for (int t = 0; t < nt; ++t) dS[(t * mm + rc) * W + l] = g * draw[(t * q + k) * W + l];
            }
          }
        } else {
#pragma omp simd
          for (int l = 0; l < W; ++l) {
            S[rc * W + l] = sc * raw[k * W + l];
            for (int t = 0; t < nt; ++t) dS[(t * mm + rc) * W + l] = sc * draw[(t * q + k) * W + l];
          }
        }
      }
    }
  }

  // b [m][W] and S [m*m][W] of member e at the standardised inputs in work (wk.z).
  template <int W>
  MS_INLINE void member_coefficients(int e, Real* work, const Work& wk, Real* b, Real* S) const {
    const int nt = gradient ? m : 0;
    const int mm = m * m;
    Real* z = work + wk.z;
    Real* net = work + wk.net;
    if (!gradient) {
      Real* u = work + wk.u;
      nn::forward<Real, W>(p, drift, e, 0, z, nullptr, u, nullptr, net);
      for (int i = 0; i < m; ++i) {
        const Real bm = p[o_b_mean + i], bs = p[o_b_scale + i];
#pragma omp simd
        for (int l = 0; l < W; ++l) b[i * W + l] = bm + bs * u[i * W + l];
      }
      Real* raw = work + wk.raw;
      nn::forward<Real, W>(p, diff, e, 0, z, nullptr, raw, nullptr, net);
      noise_factor<W>(raw, 0, nullptr, S, nullptr);
      return;
    }
    // Gradient structure: derivatives in x by forward mode, tangent t = d/dx_t.
    Real* dz = work + wk.dz;
    for (int t = 0; t < nt; ++t)
      for (int i = 0; i < m; ++i) {
        const Real v = i == t ? Real(1) / p[o_x_scale + t] : Real(0);
        for (int l = 0; l < W; ++l) dz[(t * m + i) * W + l] = v;
      }
    Real* raw = work + wk.raw;
    Real* draw = work + wk.draw;
    Real* dS = work + wk.dS;
    nn::forward<Real, W>(p, diff, e, nt, z, dz, raw, draw, net);
    noise_factor<W>(raw, nt, draw, S, dS);
    Real* u = work + wk.u;
    Real* du = work + wk.du;
    nn::forward<Real, W>(p, drift, e, nt, z, dz, u, du, net);
    const Real c = softplus(p[o_confine + e]);
#pragma omp simd
    for (int l = 0; l < W; ++l) {
      Real z2 = Real(0);
      for (int i = 0; i < m; ++i) z2 += z[i * W + l] * z[i * W + l];
      for (int i = 0; i < m; ++i) {
        Real ag = Real(0), div = Real(0);
        for (int j = 0; j < m; ++j) {
          Real Aij = Real(0);
          for (int k = 0; k < m; ++k) Aij += S[(i * m + k) * W + l] * S[(j * m + k) * W + l];
          const Real gU = u_scale * (du[j * W + l] + c * z2 * z[j * W + l] / p[o_x_scale + j]);
          ag += Aij * gU;
          // d_j A_ij = sum_k (dS_ik S_jk + S_ik dS_jk), derivative direction j
          for (int k = 0; k < m; ++k)
            div += dS[(j * mm + i * m + k) * W + l] * S[(j * m + k) * W + l] +
                   S[(i * m + k) * W + l] * dS[(j * mm + j * m + k) * W + l];
        }
        b[i * W + l] = Real(-0.5) * ag + Real(0.5) * div;
      }
    }
  }

  // Networks for the block: b [m][W], S [m*m][W] of the group's member or the ensemble mean.
  template <int W>
  MS_INLINE void network_coefficients(int group, const Real* x, Real* work, const Work& wk, Real* b,
                                      Real* S) const {
    Real* z = work + wk.z;
    for (int i = 0; i < m; ++i) {
      const Real mu = p[o_x_mean + i], sc = p[o_x_scale + i];
#pragma omp simd
      for (int l = 0; l < W; ++l) z[i * W + l] = (x[i * W + l] - mu) / sc;
    }
    if (member != kMemberMean) {
      member_coefficients<W>(member == kMemberSample ? group : member, work, wk, b, S);
      return;
    }
    const int mm = m * m;
    Real* accb = work + wk.accb;
    Real* accA = work + wk.accA;
    Real* be = work + wk.be;
    for (int c = 0; c < m * W; ++c) accb[c] = Real(0);
    for (int c = 0; c < mm * W; ++c) accA[c] = Real(0);
    for (int e = 0; e < E; ++e) {
      member_coefficients<W>(e, work, wk, be, S);
      for (int c = 0; c < m * W; ++c) accb[c] += be[c];
      for (int i = 0; i < m; ++i)
        for (int j = 0; j <= i; ++j)
#pragma omp simd
          for (int l = 0; l < W; ++l) {
            Real v = Real(0);
            for (int k = 0; k <= j; ++k) v += S[(i * m + k) * W + l] * S[(j * m + k) * W + l];
            accA[(i * m + j) * W + l] += v;
          }
    }
    const Real inv = Real(1) / Real(E);
    for (int c = 0; c < m * W; ++c) b[c] = accb[c] * inv;
    // S = chol(mean A), lower triangular (a non-positive pivot gives NaN: the step fails).
#pragma omp simd
    for (int l = 0; l < W; ++l) {
      for (int j = 0; j < m; ++j) {
        Real d = accA[(j * m + j) * W + l] * inv;
        for (int k = 0; k < j; ++k) d -= S[(j * m + k) * W + l] * S[(j * m + k) * W + l];
        const Real sd = sqrt(d);
        S[(j * m + j) * W + l] = sd;
        for (int i = j + 1; i < m; ++i) {
          Real v = accA[(i * m + j) * W + l] * inv;
          for (int k = 0; k < j; ++k) v -= S[(i * m + k) * W + l] * S[(j * m + k) * W + l];
          S[(i * m + j) * W + l] = v / sd;
        }
        for (int k = j + 1; k < m; ++k) S[(j * m + k) * W + l] = Real(0);
      }
    }
  }

  // The launchers' entry: coefficients of the W paths x [m][W] of one block, all in `group`.
  template <int W>
  MS_INLINE void block_coefficients(int group, const Real* x, Real* b, Real* S, Real* work) const {
    const Work wk = work_layout(W);
    if (table == nullptr) {
      network_coefficients<W>(group, x, work, wk, b, S);
      return;
    }
    const Real* tab = table + static_cast<int64_t>(group) * n_grid * 4;
    const Real top = Real(n_grid - 1);
    int outside = 0;
#pragma omp simd reduction(+ : outside)
    for (int l = 0; l < W; ++l) {
      const Real u = (x[l] - t_lo) * t_inv_h;
      const bool in = u >= Real(0) && u < top;  // false for NaN
      const Real uc = in ? u : Real(0);
      const Real fk = floor(uc);
      const int k = static_cast<int>(fk);
      const Real t = uc - fk, t2 = t * t, s1 = Real(1) - t;
      const Real h00 = (Real(1) + Real(2) * t) * s1 * s1, h10 = t * s1 * s1 * t_h;
      const Real h01 = t2 * (Real(3) - Real(2) * t), h11 = t2 * (t - Real(1)) * t_h;
      const Real* r0 = tab + static_cast<int64_t>(k) * 4;
      b[l] = h00 * r0[0] + h10 * r0[1] + h01 * r0[4] + h11 * r0[5];
      S[l] = h00 * r0[2] + h10 * r0[3] + h01 * r0[6] + h11 * r0[7];
      outside += in ? 0 : 1;
    }
    if (outside == 0) return;
    Real* tf = work + wk.tf;
    Real* tS = work + wk.tS;
    network_coefficients<W>(group, x, work, wk, tf, tS);
    for (int l = 0; l < W; ++l) {
      const Real u = (x[l] - t_lo) * t_inv_h;
      if (!(u >= Real(0) && u < top)) {
        b[l] = tf[l];
        S[l] = tS[l];
      }
    }
  }
};

}  // namespace ms
