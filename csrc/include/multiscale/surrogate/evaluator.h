// Header-only evaluator of exported multiscale surrogates (format: docs/surrogate_format.md).
//
// Depends on the C++17 standard library only (and on mlp.h, ../config.h and ../elementary.h,
// the layer code it shares with the compiled kernels). Loads a `.mss` file written by
// multiscale.export_surrogate and evaluates the learned effective SDE dX = b(X) dt + S(X) dW in
// float64, for one state or a batch, per ensemble member or as the ensemble mean, with the same
// arithmetic as the Python model (tanh MLPs, softplus with torch's threshold 20, the gradient
// structure b = -A grad U / 2 + div A / 2 by forward-mode derivatives).
//
//   auto s = ms::surrogate::Surrogate::load("surrogate.mss");   // throws ms::surrogate::Error
//   std::vector<double> b(s.dim()), A(s.dim() * s.dim());
//   s.drift(x, b.data());          // ensemble mean; s.drift(x, b.data(), k) for member k
//   s.diffusion(x, A.data());      // A = S S^T, row-major (dim, dim)
//
// Ring surrogates (format version 2, `kind ring`: a LocalEffectiveSDE, dX = [R(X) + U(X)] dt +
// S(X) dW on K sites with local weight-shared networks) load through the same class: drift() is
// the total drift R + U, diffusion() the diagonal A = S^2, and ring_closure() / resolved() give
// U, the diagonal S and R on their own. R is the file's stack program (docs/surrogate_format.md).
//
// A loaded Surrogate is immutable: evaluation is thread-safe.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "mlp.h"

namespace ms::surrogate {

constexpr int kFormatVersion = 2;     // newest version read
constexpr int kMinFormatVersion = 1;  // oldest version read
constexpr std::size_t kMaxHeaderBytes = 1u << 16;

/// Load or argument error, with the C API's error code.
class Error : public std::runtime_error {
 public:
  Error(int code, const std::string& what) : std::runtime_error(what), code_(code) {}
  int code() const noexcept { return code_; }

 private:
  int code_;
};

enum ErrorCode { kOk = 0, kIo = 1, kFormat = 2, kVersion = 3, kArgument = 4, kNumeric = 5 };

/// CRC-32 (IEEE 802.3, as zlib.crc32).
inline uint32_t crc32(const unsigned char* p, std::size_t n) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t c = 0xFFFFFFFFu;
  for (std::size_t i = 0; i < n; ++i) c = table[(c ^ p[i]) & 0xFFu] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

enum class Form { Cholesky, Diagonal, Scalar };
enum class Kind { Sde, Ring };

namespace detail {

// torch.nn.functional.softplus (beta 1, threshold 20) and its derivative.
inline double softplus(double u) { return u > 20.0 ? u : std::log1p(std::exp(u)); }
inline double sigmoid(double u) { return 1.0 / (1.0 + std::exp(-u)); }
inline double dsoftplus(double u) { return u > 20.0 ? 1.0 : sigmoid(u); }
constexpr double kSoftplusOne = 0.54132485461291810;  // log(e - 1): softplus(kSoftplusOne) = 1

/// One network of the ensemble in the flat layout of mlp.h (weights then biases per layer);
/// evaluation is the kernels' layer code, nn::forward with one lane.
struct Net {
  std::vector<int> sizes;
  std::vector<double> params;
  nn::NetLayout layout;
  int members = 0;

  int n_out() const { return sizes.back(); }

  /// Value (out) and, with nt > 0, tangents dout[t][j] for input tangents dz[t][i].
  void eval(int e, const double* z, int nt, const double* dz, double* out, double* dout,
            std::vector<double>& work) const {
    work.resize(static_cast<std::size_t>(nn::forward_work(layout, nt, 1)));
    nn::forward<double, 1>(params.data(), layout, e, nt, z, dz, out, dout, work.data());
  }
};

struct Scratch {
  std::vector<double> work, z, dz, raw, draw, u, du, S, dS, A, dA, gU, b, acc_b, acc_A, tmp_A;
  std::vector<double> ring_u, ring_s, acc_u, acc_s, ring_r, stack;
};

/// The resolved drift R of a ring surrogate as postfix programs (multiscale/export/_program.py):
/// one program per equation, run once per lane on a stack of doubles.
struct Program {
  enum Op { kConst = 1, kLanes, kLoad, kNeg, kAdd, kSub, kMul, kDiv, kPow, kCall1, kCall2, kMask };
  static constexpr int kUnary = 18, kBinary = 3, kMaxStack = 256;
  int dim = 0, max_stack = 0;
  std::vector<int> eq;  // offset, lanes, start, length per equation
  std::vector<int> op, arg;
  std::vector<double> consts, lanes;  // lanes: (tables, dim)

  bool empty() const { return eq.empty(); }

  static double unary(int f, double a) {
    constexpr double two_pi = 6.283185307179586;
    switch (f) {
      case 0: return std::sin(a);
      case 1: return std::cos(a);
      case 2: return std::tan(a);
      case 3: return std::exp(a);
      case 4: return std::log(a);
      case 5: return std::sqrt(a);
      case 6: return std::tanh(a);
      case 7: return std::fabs(a);
      case 8: return std::sinh(a);
      case 9: return std::cosh(a);
      case 10: return std::atan(a);
      case 11: return std::asin(a);
      case 12: return std::acos(a);
      case 13: return std::log1p(a);
      case 14: return std::expm1(a);
      case 15: return std::erf(a);
      case 16: return std::sin(two_pi * (a - std::floor(a)));  // sin2pi, the period reduced first
      default: return std::cos(two_pi * (a - std::floor(a)));  // cos2pi
    }
  }
  static double binary(int f, double a, double b) {
    if (f == 0) return std::atan2(a, b);
    if (std::isnan(a) || std::isnan(b)) return a + b;  // min/max propagate NaN (as np.minimum)
    return f == 1 ? (a < b ? a : b) : (a > b ? a : b);
  }

  /// R (dim) at the state x (dim); `stack` is work space.
  void run(const double* x, double* R, std::vector<double>& stack) const {
    stack.resize(static_cast<std::size_t>(max_stack) + 1);
    double* st = stack.data();
    for (std::size_t q = 0; q < eq.size(); q += 4) {
      const int off = eq[q], n = eq[q + 1], start = eq[q + 2], end = start + eq[q + 3];
      for (int lane = 0; lane < n; ++lane) {
        int sp = 0;
        for (int i = start; i < end; ++i) {
          const int a = arg[i];
          switch (op[i]) {
            case kConst: st[sp++] = consts[a]; break;
            case kLanes: st[sp++] = lanes[static_cast<std::size_t>(a) * dim + lane]; break;
            case kLoad: st[sp++] = x[static_cast<int>(lanes[static_cast<std::size_t>(a) * dim + lane])]; break;
            case kNeg: st[sp - 1] = -st[sp - 1]; break;
            case kCall1: st[sp - 1] = unary(a, st[sp - 1]); break;
            case kMask:
              if (lanes[static_cast<std::size_t>(a) * dim + lane] == 0.0) st[sp - 1] = 0.0;
              break;
            default: {
              const double b = st[--sp];
              double& t = st[sp - 1];
              switch (op[i]) {
                case kAdd: t = t + b; break;
                case kSub: t = t - b; break;
                case kMul: t = t * b; break;
                case kDiv: t = t / b; break;
                case kPow: t = std::pow(t, b); break;
                default: t = binary(a, t, b); break;
              }
            }
          }
        }
        R[off + lane] = st[0];
      }
    }
  }
};

/// Per-thread work space: single-state calls then allocate nothing after the first.
inline Scratch& scratch() {
  static thread_local Scratch w;
  return w;
}

}  // namespace detail

class Surrogate {
 public:
  /// Read and verify a portable surrogate file; throws Error (kIo, kFormat, kVersion).
  static Surrogate load(const std::string& path) {
    std::error_code ec;
    if (std::filesystem::exists(path, ec) && !std::filesystem::is_regular_file(path, ec))
      throw Error(kIo, "cannot open surrogate file '" + path + "': not a regular file");
    std::ifstream f(path, std::ios::binary);
    if (!f) throw Error(kIo, "cannot open surrogate file '" + path + "'");
    std::vector<unsigned char> data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    Surrogate s;
    s.parse(data, path);
    return s;
  }

  int dim() const { return m_; }
  int members() const { return E_; }
  Kind kind() const { return kind_; }
  bool ring() const { return kind_ == Kind::Ring; }
  /// Stencil half-width s of a ring surrogate (site k sees k-s .. k+s); -1 otherwise.
  int stencil() const { return ring() ? stencil_ : -1; }
  /// Whether the file holds the resolved drift R (a ring surrogate's program).
  bool has_resolved() const { return !program_.empty(); }
  Form form() const { return form_; }
  bool gradient() const { return gradient_; }
  const std::vector<std::string>& names() const { return names_; }

  /// Drift b(x) of member k, or the ensemble mean for member < 0; out has dim entries.
  void drift(const double* x, double* out, int member = -1) const {
    evaluate(x, member, out, nullptr, detail::scratch());
  }
  /// Diffusion A(x) = S S^T (row-major dim x dim) of member k, or the ensemble mean.
  void diffusion(const double* x, double* out, int member = -1) const {
    evaluate(x, member, nullptr, out, detail::scratch());
  }
  /// Lower-triangular S with S S^T = diffusion(x) (Cholesky); false if A is not positive definite.
  bool noise(const double* x, double* out, int member = -1) const {
    diffusion(x, out, member);
    return ring() ? diagonal_sqrt(out, m_) : cholesky(out, m_);
  }
  /// Batches: x is (n, dim) row-major; drift (n, dim), diffusion/noise (n, dim, dim).
  void drift_batch(const double* x, int64_t n, double* out, int member = -1) const {
    detail::Scratch& w = detail::scratch();
    for (int64_t i = 0; i < n; ++i) evaluate(x + i * m_, member, out + i * m_, nullptr, w);
  }
  void diffusion_batch(const double* x, int64_t n, double* out, int member = -1) const {
    detail::Scratch& w = detail::scratch();
    for (int64_t i = 0; i < n; ++i) evaluate(x + i * m_, member, nullptr, out + i * m_ * m_, w);
  }
  bool noise_batch(const double* x, int64_t n, double* out, int member = -1) const {
    diffusion_batch(x, n, out, member);
    bool ok = true;
    for (int64_t i = 0; i < n; ++i)
      ok = (ring() ? diagonal_sqrt(out + i * m_ * m_, m_) : cholesky(out + i * m_ * m_, m_)) && ok;
    return ok;
  }

  /// Ring surrogates: the closure U (sites) and the diagonal noise S (sites) at the state x
  /// (sites) of member k, or for member < 0 the ensemble means U = mean_e U_e and
  /// S = sqrt(mean_e S_e^2) (the square root of the mean diffusion). Either output may be null.
  /// Throws Error(kArgument) for a surrogate that is not a ring.
  void ring_closure(const double* x, double* U, double* S, int member = -1) const {
    require_ring("ring_closure");
    ring_eval(x, member, U, S, detail::scratch());
  }
  void ring_closure_batch(const double* x, int64_t n, double* U, double* S, int member = -1) const {
    require_ring("ring_closure");
    detail::Scratch& w = detail::scratch();
    for (int64_t i = 0; i < n; ++i) ring_eval(x + i * m_, member, U ? U + i * m_ : nullptr, S ? S + i * m_ : nullptr, w);
  }
  /// Ring surrogates: the resolved drift R (sites) at x (zeros when the file has none).
  void resolved(const double* x, double* R) const {
    require_ring("resolved");
    resolved_eval(x, R, detail::scratch());
  }
  void resolved_batch(const double* x, int64_t n, double* R) const {
    require_ring("resolved");
    detail::Scratch& w = detail::scratch();
    for (int64_t i = 0; i < n; ++i) resolved_eval(x + i * m_, R + i * m_, w);
  }

  /// In-place square root of a diagonal row-major matrix (its Cholesky factor).
  static bool diagonal_sqrt(double* a, int n) {
    bool ok = true;
    for (int i = 0; i < n; ++i) {
      const double d = a[i * n + i];
      ok = ok && d > 0.0 && std::isfinite(d);
      a[i * n + i] = std::sqrt(d);
    }
    return ok;
  }

  /// In-place Cholesky of a symmetric positive-definite row-major matrix (upper part zeroed).
  static bool cholesky(double* a, int n) {
    for (int j = 0; j < n; ++j) {
      double d = a[j * n + j];
      for (int k = 0; k < j; ++k) d -= a[j * n + k] * a[j * n + k];
      if (!(d > 0.0) || !std::isfinite(d)) return false;
      d = std::sqrt(d);
      a[j * n + j] = d;
      for (int i = j + 1; i < n; ++i) {
        double v = a[i * n + j];
        for (int k = 0; k < j; ++k) v -= a[i * n + k] * a[j * n + k];
        a[i * n + j] = v / d;
      }
      for (int k = j + 1; k < n; ++k) a[j * n + k] = 0.0;
    }
    return true;
  }

 private:
  int m_ = 0, E_ = 0;
  Form form_ = Form::Cholesky;
  bool gradient_ = false;
  std::vector<std::string> names_;
  detail::Net drift_net_, diff_net_;
  std::vector<double> confine_, x_mean_, x_scale_, b_mean_, b_scale_, s_scale_;
  Kind kind_ = Kind::Sde;
  int stencil_ = 0;
  double rx_mean_ = 0, rx_scale_ = 1, ru_mean_ = 0, ru_scale_ = 1, rs_scale_ = 1;  // ring scalings
  detail::Program program_;

  void require_ring(const char* fn) const {
    if (!ring()) throw Error(kArgument, std::string(fn) + ": the surrogate is not a ring (kind ring) surrogate");
  }

  void resolved_eval(const double* x, double* R, detail::Scratch& w) const {
    if (program_.empty()) std::fill(R, R + m_, 0.0);
    else program_.run(x, R, w.stack);
  }

  /// U and S (sites) of member e: each site's standardised stencil through the shared networks.
  void ring_member(int e, const double* x, double* U, double* S, detail::Scratch& w) const {
    const int K = m_, wd = 2 * stencil_ + 1;
    w.z.resize(wd);
    w.u.resize(1);
    w.raw.resize(1);
    for (int k = 0; k < K; ++k) {
      for (int j = 0; j < wd; ++j) w.z[j] = (x[((k - stencil_ + j) % K + K) % K] - rx_mean_) / rx_scale_;
      if (U) {
        drift_net_.eval(e, w.z.data(), 0, nullptr, w.u.data(), nullptr, w.work);
        U[k] = ru_mean_ + ru_scale_ * w.u[0];
      }
      if (S) {
        diff_net_.eval(e, w.z.data(), 0, nullptr, w.raw.data(), nullptr, w.work);
        S[k] = rs_scale_ * (detail::softplus(w.raw[0] + detail::kSoftplusOne) + 1e-6);
      }
    }
  }

  /// U and S of a member, or the ensemble means (U mean, S = sqrt(mean S^2)).
  void ring_eval(const double* x, int member, double* U, double* S, detail::Scratch& w) const {
    if (member >= 0) {
      ring_member(member, x, U, S, w);
      return;
    }
    const int K = m_;
    w.ring_u.resize(K);
    w.ring_s.resize(K);
    w.acc_u.assign(K, 0.0);
    w.acc_s.assign(K, 0.0);
    for (int e = 0; e < E_; ++e) {
      ring_member(e, x, U ? w.ring_u.data() : nullptr, S ? w.ring_s.data() : nullptr, w);
      for (int k = 0; U && k < K; ++k) w.acc_u[k] += w.ring_u[k];
      for (int k = 0; S && k < K; ++k) w.acc_s[k] += w.ring_s[k] * w.ring_s[k];
    }
    for (int k = 0; U && k < K; ++k) U[k] = w.acc_u[k] / E_;
    for (int k = 0; S && k < K; ++k) S[k] = std::sqrt(w.acc_s[k] / E_);
  }

  /// Total drift R + U and/or the diagonal diffusion A = S^2 (a K x K matrix) of a ring.
  void ring_evaluate(const double* x, int member, double* b, double* A, detail::Scratch& w) const {
    const int K = m_;
    w.ring_r.resize(K);
    w.acc_b.resize(K);
    w.acc_A.resize(K);
    ring_eval(x, member, b ? w.acc_b.data() : nullptr, A ? w.acc_A.data() : nullptr, w);
    if (b) {
      resolved_eval(x, w.ring_r.data(), w);
      for (int k = 0; k < K; ++k) b[k] = w.ring_r[k] + w.acc_b[k];
    }
    if (A) {
      std::fill(A, A + static_cast<std::size_t>(K) * K, 0.0);
      for (int k = 0; k < K; ++k) A[static_cast<std::size_t>(k) * K + k] = w.acc_A[k] * w.acc_A[k];
    }
  }

  // ------------------------------------------------------------------ evaluation
  /// Noise factor S (m x m) of member e from raw outputs; with nt > 0 also dS[t] from draw[t].
  void noise_factor(const double* raw, int nt, const double* draw, double* S, double* dS) const {
    const int m = m_;
    std::fill(S, S + m * m, 0.0);
    if (nt) std::fill(dS, dS + static_cast<std::size_t>(nt) * m * m, 0.0);
    const int q_out = diff_net_.n_out();
    if (form_ == Form::Scalar) {
      double c = 0.0;
      for (int i = 0; i < m; ++i) c += s_scale_[i];
      c /= m;
      const double u = raw[0] + detail::kSoftplusOne;
      const double s = c * (detail::softplus(u) + 1e-6);
      for (int i = 0; i < m; ++i) S[i * m + i] = s;
      for (int t = 0; t < nt; ++t) {
        const double ds = c * detail::dsoftplus(u) * draw[t * q_out];
        for (int i = 0; i < m; ++i) dS[(t * m + i) * m + i] = ds;
      }
      return;
    }
    int q = 0;
    for (int r = 0; r < m; ++r) {
      for (int col = (form_ == Form::Diagonal ? r : 0); col <= r; ++col, ++q) {
        const double sc = s_scale_[r];
        if (r == col) {
          const double u = raw[q] + detail::kSoftplusOne;
          S[r * m + col] = sc * (detail::softplus(u) + 1e-6);
          for (int t = 0; t < nt; ++t) dS[(t * m + r) * m + col] = sc * detail::dsoftplus(u) * draw[t * q_out + q];
        } else {
          S[r * m + col] = sc * raw[q];
          for (int t = 0; t < nt; ++t) dS[(t * m + r) * m + col] = sc * draw[t * q_out + q];
        }
      }
    }
  }

  /// b (m) and/or A (m x m) of member e at x.
  void member_eval(int e, const double* x, double* b, double* A, detail::Scratch& w) const {
    const int m = m_;
    w.z.resize(m);
    for (int i = 0; i < m; ++i) w.z[i] = (x[i] - x_mean_[i]) / x_scale_[i];
    const bool need_d = gradient_ && b != nullptr;  // derivatives in x only for the gradient structure
    const int nt = need_d ? m : 0;
    if (nt) {  // tangent t = d/dx_t: dz_i = delta_it / x_scale_i
      w.dz.assign(static_cast<std::size_t>(m) * m, 0.0);
      for (int t = 0; t < m; ++t) w.dz[t * m + t] = 1.0 / x_scale_[t];
    }
    // The diffusion network is needed for A, and for the drift only with the gradient structure.
    if (A != nullptr || gradient_) {
      const int q = diff_net_.n_out();
      w.raw.resize(q);
      w.draw.resize(static_cast<std::size_t>(nt) * q);
      w.S.resize(m * m);
      w.dS.resize(static_cast<std::size_t>(nt) * m * m);
      diff_net_.eval(e, w.z.data(), nt, w.dz.data(), w.raw.data(), w.draw.data(), w.work);
      noise_factor(w.raw.data(), nt, w.draw.data(), w.S.data(), w.dS.data());
      w.A.assign(m * m, 0.0);
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < m; ++j) {
          double v = 0.0;
          for (int k = 0; k < m; ++k) v += w.S[i * m + k] * w.S[j * m + k];
          w.A[i * m + j] = v;
        }
      if (A) std::copy(w.A.begin(), w.A.end(), A);
    }
    if (!b) return;
    if (!gradient_) {
      w.u.resize(m);
      drift_net_.eval(e, w.z.data(), 0, nullptr, w.u.data(), nullptr, w.work);
      for (int i = 0; i < m; ++i) b[i] = b_mean_[i] + b_scale_[i] * w.u[i];
      return;
    }
    // Gradient structure: U = u_scale (net(z) + c |z|^4 / 4), b = -A grad U / 2 + div A / 2.
    w.u.resize(1);
    w.du.resize(m);
    drift_net_.eval(e, w.z.data(), m, w.dz.data(), w.u.data(), w.du.data(), w.work);
    double us = 0.0;
    for (int i = 0; i < m; ++i) us += b_scale_[i] * x_scale_[i] / (s_scale_[i] * s_scale_[i]);
    us = 2.0 * us / m;
    const double c = detail::softplus(confine_[e]);
    double z2 = 0.0;
    for (int i = 0; i < m; ++i) z2 += w.z[i] * w.z[i];
    w.gU.resize(m);
    for (int t = 0; t < m; ++t) w.gU[t] = us * (w.du[t] + c * z2 * w.z[t] / x_scale_[t]);
    for (int i = 0; i < m; ++i) {
      double ag = 0.0, div = 0.0;
      for (int j = 0; j < m; ++j) {
        ag += w.A[i * m + j] * w.gU[j];
        // d_j A_ij = sum_k (dS_ik S_jk + S_ik dS_jk), derivative direction j
        for (int k = 0; k < m; ++k)
          div += w.dS[(j * m + i) * m + k] * w.S[j * m + k] + w.S[i * m + k] * w.dS[(j * m + j) * m + k];
      }
      b[i] = -0.5 * ag + 0.5 * div;
    }
  }

  void evaluate(const double* x, int member, double* b, double* A, detail::Scratch& w) const {
    const int m = m_;
    if (ring()) {
      ring_evaluate(x, member, b, A, w);
      return;
    }
    if (member >= 0) {
      member_eval(member, x, b, A, w);
      return;
    }
    w.b.assign(m, 0.0);
    w.acc_b.assign(m, 0.0);
    w.acc_A.assign(m * m, 0.0);
    w.tmp_A.resize(m * m);
    for (int e = 0; e < E_; ++e) {
      member_eval(e, x, b ? w.b.data() : nullptr, A ? w.tmp_A.data() : nullptr, w);
      for (int i = 0; b && i < m; ++i) w.acc_b[i] += w.b[i];
      for (int i = 0; A && i < m * m; ++i) w.acc_A[i] += w.tmp_A[i];
    }
    for (int i = 0; b && i < m; ++i) b[i] = w.acc_b[i] / E_;
    for (int i = 0; A && i < m * m; ++i) A[i] = w.acc_A[i] / E_;
  }

  // ------------------------------------------------------------------ parsing
  static int to_int(const std::string& s, const std::string& what, const std::string& where) {
    std::size_t pos = 0;
    long v = 0;
    try {
      v = std::stol(s, &pos);
    } catch (...) {
      pos = 0;
    }
    if (pos == 0 || pos != s.size() || v < 0 || v > (1L << 31) - 1)
      throw Error(kFormat, where + ": bad " + what + " '" + s + "'");
    return static_cast<int>(v);
  }

  void parse(const std::vector<unsigned char>& data, const std::string& where) {
    const std::string magic = "MSSURROGATE ";
    const std::string end_tag = "\nend_header\n";
    if (data.size() < magic.size() || std::memcmp(data.data(), magic.data(), magic.size()) != 0)
      throw Error(kFormat, where + ": not a multiscale portable surrogate file (no MSSURROGATE header)");
    const std::size_t limit = std::min<std::size_t>(data.size(), kMaxHeaderBytes);
    const std::string head_area(data.begin(), data.begin() + limit);
    const std::size_t end = head_area.find(end_tag);
    if (end == std::string::npos) throw Error(kFormat, where + ": header not terminated (truncated file?)");
    const std::string header = head_area.substr(0, end + 1);
    std::istringstream lines(header);
    std::string line, key;
    std::getline(lines, line);
    int version = 0;
    for (int v = kMinFormatVersion; v <= kFormatVersion; ++v)
      if (line == magic + std::to_string(v)) version = v;
    if (version == 0)
      throw Error(kVersion, where + ": format version '" + line.substr(magic.size()) + "'; this reader supports " +
                                std::to_string(kMinFormatVersion) + " to " + std::to_string(kFormatVersion));
    const std::size_t crc_pos = header.rfind("\nheader_crc32 ");
    if (crc_pos == std::string::npos) throw Error(kFormat, where + ": the header has no header_crc32 line");
    const uint32_t hcrc = crc32(data.data(), crc_pos + 1);
    std::vector<int> hidden;
    std::vector<std::pair<std::string, std::vector<int>>> arrays;
    long long payload_bytes = -1, meta_bytes = -1;
    std::string payload_crc, header_crc, diffusion, activation, kind;
    int gradient = -1, stencil = -1, resolved = -1;
    while (std::getline(lines, line)) {
      std::istringstream ls(line);
      ls >> key;
      std::vector<std::string> vals;
      for (std::string v; ls >> v;) vals.push_back(v);
      auto one = [&]() -> const std::string& {
        if (vals.size() != 1) throw Error(kFormat, where + ": malformed header line '" + line + "'");
        return vals[0];
      };
      if (key == "dim") m_ = to_int(one(), "dim", where);
      else if (key == "members") E_ = to_int(one(), "members", where);
      else if (key == "hidden") for (auto& v : vals) hidden.push_back(to_int(v, "hidden width", where));
      else if (key == "activation") activation = one();
      else if (key == "diffusion") diffusion = one();
      else if (key == "gradient") gradient = to_int(one(), "gradient", where);
      else if (key == "names") names_ = vals;
      else if (key == "kind" && version >= 2) kind = one();
      else if (key == "stencil" && version >= 2) stencil = to_int(one(), "stencil", where);
      else if (key == "resolved" && version >= 2) resolved = to_int(one(), "resolved", where);
      else if (key == "arrays") to_int(one(), "arrays", where);
      else if (key == "array") {
        if (vals.size() < 2) throw Error(kFormat, where + ": malformed array line '" + line + "'");
        const int nd = to_int(vals[1], "array rank", where);
        if (nd > 4 || static_cast<int>(vals.size()) != nd + 2)
          throw Error(kFormat, where + ": malformed array line '" + line + "'");
        std::vector<int> shape;
        for (int d = 0; d < nd; ++d) shape.push_back(to_int(vals[2 + d], "array extent", where));
        arrays.emplace_back(vals[0], shape);
      } else if (key == "metadata_bytes") meta_bytes = to_int(one(), "metadata_bytes", where);
      else if (key == "payload_bytes") payload_bytes = to_int(one(), "payload_bytes", where);
      else if (key == "payload_crc32") payload_crc = one();
      else if (key == "header_crc32") header_crc = one();
      else throw Error(kFormat, where + ": unknown header key '" + key + "'");
    }
    char hex[16];
    std::snprintf(hex, sizeof hex, "%08x", hcrc);
    if (header_crc != hex) throw Error(kFormat, where + ": header checksum mismatch (modified or corrupted)");
    if (version >= 2 && kind != "sde" && kind != "ring")
      throw Error(kFormat, where + ": format version " + std::to_string(version) +
                               " needs a 'kind sde|ring' line, got '" + kind + "'");
    kind_ = kind == "ring" ? Kind::Ring : Kind::Sde;
    if (!ring() && (stencil != -1 || resolved != -1))
      throw Error(kFormat, where + ": 'stencil' and 'resolved' lines belong to ring surrogates");
    const int max_dim = ring() ? 4096 : 64;
    if (m_ < 1 || m_ > max_dim)
      throw Error(kFormat, where + ": dim " + std::to_string(m_) + " outside [1, " + std::to_string(max_dim) + "]");
    if (ring()) {
      if (stencil < 0 || stencil > 16 || 2 * stencil + 1 > m_)
        throw Error(kFormat, where + ": stencil " + std::to_string(stencil) + " must be in [0, 16] with 2 s + 1 <= dim");
      if (resolved != 0 && resolved != 1) throw Error(kFormat, where + ": resolved must be 0 or 1");
      stencil_ = stencil;
    }
    if (E_ < 1 || E_ > 1024) throw Error(kFormat, where + ": members " + std::to_string(E_) + " outside [1, 1024]");
    if (hidden.empty() || hidden.size() > 64) throw Error(kFormat, where + ": bad hidden layer list");
    for (int h : hidden)
      if (h < 1 || h > 4096) throw Error(kFormat, where + ": hidden width " + std::to_string(h) + " outside [1, 4096]");
    if (activation != "tanh") throw Error(kFormat, where + ": activation '" + activation + "' (only tanh)");
    if (diffusion == "cholesky") form_ = Form::Cholesky;
    else if (diffusion == "diagonal") form_ = Form::Diagonal;
    else if (diffusion == "scalar") form_ = Form::Scalar;
    else throw Error(kFormat, where + ": diffusion form '" + diffusion + "'");
    if (gradient != 0 && gradient != 1) throw Error(kFormat, where + ": gradient must be 0 or 1");
    gradient_ = gradient == 1;
    if (static_cast<int>(names_.size()) != m_) throw Error(kFormat, where + ": names do not match dim");
    if (payload_bytes < 0 || meta_bytes < 0 || meta_bytes > payload_bytes)
      throw Error(kFormat, where + ": bad payload_bytes/metadata_bytes");
    const std::size_t start = end + end_tag.size();
    if (data.size() - start != static_cast<std::size_t>(payload_bytes))
      throw Error(kFormat, where + ": payload has " + std::to_string(data.size() - start) + " bytes, the header says " +
                               std::to_string(payload_bytes) + " (truncated or padded file)");
    std::snprintf(hex, sizeof hex, "%08x", crc32(data.data() + start, static_cast<std::size_t>(payload_bytes)));
    if (payload_crc != hex) throw Error(kFormat, where + ": payload checksum mismatch (modified or corrupted)");

    if (ring() && (form_ != Form::Diagonal || gradient_))
      throw Error(kFormat, where + ": a ring surrogate has 'diffusion diagonal' and 'gradient 0'");

    // Expected arrays and shapes, in the order of the header.
    const int q = form_ == Form::Cholesky ? m_ * (m_ + 1) / 2 : (form_ == Form::Diagonal ? m_ : 1);
    const int n_in = ring() ? 2 * stencil_ + 1 : m_;  // a ring's shared networks see one stencil
    drift_net_.sizes = {n_in};
    diff_net_.sizes = {n_in};
    for (int h : hidden) {
      drift_net_.sizes.push_back(h);
      diff_net_.sizes.push_back(h);
    }
    drift_net_.sizes.push_back(ring() ? 1 : (gradient_ ? 1 : m_));
    diff_net_.sizes.push_back(ring() ? 1 : q);
    const std::size_t L = hidden.size() + 1;
    std::size_t off = start;
    const std::size_t array_end = start + static_cast<std::size_t>(payload_bytes - meta_bytes);
    std::size_t k = 0;
    auto take = [&](const std::string& name, const std::vector<int>& shape) {
      if (k >= arrays.size() || arrays[k].first != name || arrays[k].second != shape) {
        std::string want = name + " (";
        for (int d : shape) want += std::to_string(d) + ",";
        throw Error(kFormat, where + ": expected array " + want + ") at position " + std::to_string(k));
      }
      std::size_t n = 1;
      for (int d : shape) n *= static_cast<std::size_t>(d);
      if (off + 8 * n > array_end) throw Error(kFormat, where + ": array " + name + " runs past the array block");
      std::vector<double> v(n);
      for (std::size_t i = 0; i < n; ++i) {  // little-endian float64, whatever the host
        uint64_t bits = 0;
        for (int byte = 7; byte >= 0; --byte) bits = (bits << 8) | data[off + 8 * i + byte];
        std::memcpy(&v[i], &bits, 8);
      }
      off += 8 * n;
      ++k;
      return v;
    };
    for (auto* net : {&drift_net_, &diff_net_}) {
      const std::string pre = net == &drift_net_ ? "drift_net" : "diff_net";
      net->members = E_;
      net->params.clear();
      for (std::size_t l = 0; l < L; ++l) {
        for (double v : take(pre + ".weights." + std::to_string(l), {E_, net->sizes[l], net->sizes[l + 1]}))
          net->params.push_back(v);
        for (double v : take(pre + ".biases." + std::to_string(l), {E_, 1, net->sizes[l + 1]}))
          net->params.push_back(v);
      }
      bool ok = false;
      nn::make_layout(net->layout, E_, static_cast<int>(L), net->sizes.data(), 0, ok);
      if (!ok) throw Error(kFormat, where + ": " + std::to_string(L) + " layers (at most " +
                                        std::to_string(nn::kMaxLayers) + ")");
    }
    if (ring()) {
      rx_mean_ = take("x_mean", {1})[0];
      rx_scale_ = take("x_scale", {1})[0];
      ru_mean_ = take("u_mean", {1})[0];
      ru_scale_ = take("u_scale", {1})[0];
      rs_scale_ = take("s_scale", {1})[0];
      if (!(rx_scale_ > 0.0) || !std::isfinite(rx_scale_)) throw Error(kFormat, where + ": x_scale must be positive");
      if (resolved == 1) {
        // Extents of the program's arrays come from the header; the fixed ones are checked.
        auto shape_at = [&](const std::string& name, int rank) -> std::vector<int> {
          if (k >= arrays.size() || arrays[k].first != name || static_cast<int>(arrays[k].second.size()) != rank)
            throw Error(kFormat, where + ": expected array " + name + " at position " + std::to_string(k));
          return arrays[k].second;
        };
        // One statement per array: take() reads them in header order.
        const std::vector<int> se = shape_at("resolved.equations", 2);
        if (se[1] != 4) throw Error(kFormat, where + ": resolved.equations must be (n, 4)");
        const std::vector<double> eqs = take("resolved.equations", se);
        const std::vector<int> sc = shape_at("resolved.code", 2);
        if (sc[1] != 2) throw Error(kFormat, where + ": resolved.code must be (n, 2)");
        const std::vector<double> code = take("resolved.code", sc);
        const std::vector<double> consts = take("resolved.constants", shape_at("resolved.constants", 1));
        const std::vector<int> sl = shape_at("resolved.lanes", 2);
        if (sl[1] != m_) throw Error(kFormat, where + ": resolved.lanes must be (n, dim)");
        const std::vector<double> lanes = take("resolved.lanes", sl);
        load_program(eqs, where, code, consts, lanes);
      }
    } else {
      confine_ = take("confine", {E_});
      x_mean_ = take("x_mean", {m_});
      x_scale_ = take("x_scale", {m_});
      b_mean_ = take("b_mean", {m_});
      b_scale_ = take("b_scale", {m_});
      s_scale_ = take("s_scale", {m_});
      take("x_lo", {m_});
      take("x_hi", {m_});
    }
    if (k != arrays.size() || off != array_end)
      throw Error(kFormat, where + ": the header lists arrays this reader does not know");
    for (double v : x_scale_)
      if (!(v > 0.0)) throw Error(kFormat, where + ": x_scale must be positive");
  }

  /// Check the resolved drift's program completely (opcodes, operands, stack depth, state
  /// indices, equations inside the state): a damaged program is refused at load, never run.
  void load_program(const std::vector<double>& eqs, const std::string& where, const std::vector<double>& code,
                    const std::vector<double>& consts, const std::vector<double>& lanes) {
    auto bad = [&](const std::string& what) { return Error(kFormat, where + ": resolved program: " + what); };
    auto as_int = [&](double v, long lo, long hi, const char* what) {
      if (!(v >= static_cast<double>(lo) && v <= static_cast<double>(hi)) || v != std::floor(v))
        throw bad(std::string("bad ") + what);
      return static_cast<int>(v);
    };
    detail::Program& p = program_;
    p.dim = m_;
    p.consts = consts;
    p.lanes = lanes;
    const long n_code = static_cast<long>(code.size() / 2), n_tab = static_cast<long>(lanes.size() / m_);
    for (std::size_t i = 0; i < code.size(); i += 2) {
      p.op.push_back(as_int(code[i], detail::Program::kConst, detail::Program::kMask, "opcode"));
      p.arg.push_back(as_int(code[i + 1], 0, 1L << 30, "operand"));
    }
    for (double v : eqs) p.eq.push_back(as_int(v, 0, 1L << 30, "equation entry"));
    if (p.eq.empty() || p.eq.size() % 4 != 0) throw bad("no equations, or a truncated equation table");
    std::vector<int> covered(static_cast<std::size_t>(m_), 0);  // every component written exactly once
    for (std::size_t q = 0; q < p.eq.size(); q += 4) {
      const int off = p.eq[q], n = p.eq[q + 1], start = p.eq[q + 2], len = p.eq[q + 3];
      if (n < 1 || off + static_cast<long>(n) > m_ || len < 1 || start + static_cast<long>(len) > n_code)
        throw bad("equation outside the state or the code");
      for (int lane = 0; lane < n; ++lane) ++covered[static_cast<std::size_t>(off + lane)];
      int depth = 0;
      for (int i = start; i < start + len; ++i) {
        const int op = p.op[i], a = p.arg[i];
        const bool table = op == detail::Program::kLanes || op == detail::Program::kLoad || op == detail::Program::kMask;
        if ((op == detail::Program::kConst && a >= static_cast<long>(consts.size())) || (table && a >= n_tab) ||
            (op == detail::Program::kCall1 && a >= detail::Program::kUnary) ||
            (op == detail::Program::kCall2 && a >= detail::Program::kBinary))
          throw bad("operand out of range at instruction " + std::to_string(i));
        if (op == detail::Program::kLoad)
          for (int lane = 0; lane < n; ++lane)
            as_int(lanes[static_cast<std::size_t>(a) * m_ + lane], 0, m_ - 1, "state index");
        if (op <= detail::Program::kLoad) ++depth;
        else if ((op >= detail::Program::kAdd && op <= detail::Program::kPow) || op == detail::Program::kCall2) --depth;
        if (depth < 1 || depth > detail::Program::kMaxStack) throw bad("stack underflow or overflow at instruction " +
                                                                       std::to_string(i));
        p.max_stack = std::max(p.max_stack, depth);
      }
      if (depth != 1) throw bad("an equation leaves " + std::to_string(depth) + " values on the stack");
    }
    for (int k = 0; k < m_; ++k)
      if (covered[static_cast<std::size_t>(k)] != 1)
        throw bad("component " + std::to_string(k) + " is written " + std::to_string(covered[static_cast<std::size_t>(k)]) +
                  " times (must be once)");
  }
};

}  // namespace ms::surrogate
