// The layer code of a learned surrogate's networks: dense layers with tanh between them, for W
// paths at once in [component][lane] layout (W = 1: one state). The one MLP implementation of
// the project: the compiled kernels (models/surrogate.h, CPU lanes and CUDA threads) and the
// exported C++ evaluator (evaluator.h) both call it.
//
// Parameter layout (the portable format's array order, docs/surrogate_format.md): for each layer
// l, weights [members][n_l][n_{l+1}] (row-major, fan_in x fan_out) and then biases
// [members][n_{l+1}], all in one flat buffer.
// Standard library only; host and device.
#pragma once
#include <cmath>
#include <cstdint>

#include "../config.h"
#include "../elementary.h"

// Multiply-add: one fused instruction where the target has it (the result then differs from
// a separate multiply and add by at most 1 ulp per operation), else the plain expression.
#if defined(__CUDA_ARCH__)
#define MS_FMA(a, b, c) fma((a), (b), (c))
#elif defined(__FMA__)
#define MS_FMA(a, b, c) std::fma((a), (b), (c))
#else
#define MS_FMA(a, b, c) ((a) * (b) + (c))
#endif

namespace ms::nn {

constexpr int kMaxLayers = 16;  // hidden layers + the output layer

// Where one ensemble network's arrays sit in the flat parameter buffer.
struct NetLayout {
  int n_layers = 0;                 // dense layers (hidden + output)
  int sizes[kMaxLayers + 1] = {};   // n_0 = inputs, ..., n_L = outputs
  int64_t w_off[kMaxLayers] = {};   // start of layer l's weights (member 0)
  int64_t b_off[kMaxLayers] = {};   // start of layer l's biases (member 0)
  int members = 0;

  MS_HOST_DEVICE int n_in() const { return sizes[0]; }
  MS_HOST_DEVICE int n_out() const { return sizes[n_layers]; }
  MS_HOST_DEVICE int max_width() const {
    int w = 0;
    for (int l = 0; l <= n_layers; ++l) w = sizes[l] > w ? sizes[l] : w;
    return w;
  }
};

// Lays out a network with layer sizes sizes[0..n_layers] whose arrays start at `offset`;
// returns the offset just after it (false in `ok` when n_layers is out of range).
MS_HOST_DEVICE inline int64_t make_layout(NetLayout& L, int members, int n_layers, const int* sizes,
                                          int64_t offset, bool& ok) {
  ok = n_layers >= 1 && n_layers <= kMaxLayers && members >= 1;
  if (!ok) return offset;
  L.n_layers = n_layers;
  L.members = members;
  for (int l = 0; l <= n_layers; ++l) L.sizes[l] = sizes[l];
  for (int l = 0; l < n_layers; ++l) {
    L.w_off[l] = offset;
    offset += static_cast<int64_t>(members) * sizes[l] * sizes[l + 1];
    L.b_off[l] = offset;
    offset += static_cast<int64_t>(members) * sizes[l + 1];
  }
  return offset;
}

// Outputs j0 .. j0+J-1 of a dense layer: a[j][:] = bias[j] + sum_i h[i][:] w[i][j] over W lanes,
// summed in the order i = 0, 1, ... (bias null: no bias, for tangents). The J x W accumulators
// stay in registers across the sum; each input lane vector is loaded once for J outputs and each
// weight is one broadcast shared by all lanes.
template <class Real, int W, int J>
MS_INLINE void dense_outputs(const Real* w, const Real* bias, int ni, int no, int j0, const Real* h, Real* a) {
  Real acc[J][W];
#pragma GCC unroll 8
  for (int jj = 0; jj < J; ++jj) {
    const Real bj = bias != nullptr ? bias[j0 + jj] : Real(0);
#pragma omp simd
    for (int l = 0; l < W; ++l) acc[jj][l] = bj;
  }
  for (int i = 0; i < ni; ++i) {
    const Real* hi = h + static_cast<int64_t>(i) * W;
    const Real* wi = w + static_cast<int64_t>(i) * no + j0;
#pragma GCC unroll 8
    for (int jj = 0; jj < J; ++jj) {
      const Real wij = wi[jj];
#pragma omp simd
      for (int l = 0; l < W; ++l) acc[jj][l] = MS_FMA(hi[l], wij, acc[jj][l]);
    }
  }
#pragma GCC unroll 8
  for (int jj = 0; jj < J; ++jj) {
    Real* aj = a + static_cast<int64_t>(j0 + jj) * W;
#pragma omp simd
    for (int l = 0; l < W; ++l) aj[l] = acc[jj][l];
  }
}

// A dense layer on W lanes ([component][lane] layout): outputs in groups whose accumulators fit
// the registers (about 12 vector registers: 3 outputs of 16 doubles or 32 floats with AVX2).
template <class Real, int W>
MS_INLINE void dense(const Real* w, const Real* bias, int ni, int no, const Real* h, Real* a) {
  constexpr int kVec = 32 / static_cast<int>(sizeof(Real));                  // lanes per AVX2 register
  constexpr int kRegs = W >= kVec ? W / kVec : 1;                            // registers per output
  constexpr int J = W == 1 ? 4 : (12 / kRegs >= 1 ? (12 / kRegs > 8 ? 8 : 12 / kRegs) : 1);
  int j = 0;
  for (; j + J <= no; j += J) dense_outputs<Real, W, J>(w, bias, ni, no, j, h, a);
  for (; j < no; ++j) dense_outputs<Real, W, 1>(w, bias, ni, no, j, h, a);
}

// Reals of work space forward() needs for nt tangents.
MS_HOST_DEVICE inline int64_t forward_work(const NetLayout& L, int nt, int W) {
  return 2 * static_cast<int64_t>(1 + nt) * L.max_width() * W;
}

// Member e of the network on W lanes: z [n_in][W] -> out [n_out][W]; with nt > 0 also the
// tangents dz [nt][n_in][W] -> dout [nt][n_out][W] (forward mode). `work` holds
// forward_work(L, nt, W) Reals.
template <class Real, int W>
MS_INLINE void forward(const Real* params, const NetLayout& L, int e, int nt, const Real* z, const Real* dz,
                       Real* out, Real* dout, Real* work) {
  const int64_t span = static_cast<int64_t>(L.max_width()) * W;
  Real* buf[2] = {work, work + (1 + nt) * span};  // each: value [width][W], then nt tangents
  const Real* h = z;
  const Real* dh = dz;
  int64_t dh_stride = static_cast<int64_t>(L.sizes[0]) * W;  // between tangents of h
  for (int l = 0; l < L.n_layers; ++l) {
    const int ni = L.sizes[l], no = L.sizes[l + 1];
    const Real* w = params + L.w_off[l] + static_cast<int64_t>(e) * ni * no;
    const Real* b = params + L.b_off[l] + static_cast<int64_t>(e) * no;
    const bool last = l == L.n_layers - 1;
    Real* a = last ? out : buf[l & 1];
    Real* da = last ? dout : buf[l & 1] + span;
    const int64_t da_stride = last ? static_cast<int64_t>(no) * W : span;
    dense<Real, W>(w, b, ni, no, h, a);
    for (int s = 0; s < nt; ++s) dense<Real, W>(w, nullptr, ni, no, dh + s * dh_stride, da + s * da_stride);
    if (last) break;
    // tanh, then the tangents' factor tanh' = 1 - tanh^2, in separate loops: a loop with the
    // tangent loop inside does not vectorise, and the scalar tanh would cost more than the
    // matrix product.
    const int64_t n_a = static_cast<int64_t>(no) * W;
#pragma omp simd
    for (int64_t c = 0; c < n_a; ++c) a[c] = poly_tanh(a[c]);
    for (int s = 0; s < nt; ++s) {
      Real* ds = da + s * da_stride;
#pragma omp simd
      for (int64_t c = 0; c < n_a; ++c) ds[c] *= Real(1) - a[c] * a[c];
    }
    h = a;
    dh = da;
    dh_stride = da_stride;
  }
}

}  // namespace ms::nn
