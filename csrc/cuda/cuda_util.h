// Shared by the CUDA launchers: error checking with file and line, and an owning device array.
#pragma once
#include <cuda_runtime.h>

#include "multiscale/integrators/euler_maruyama.h"
#include "multiscale/models/surrogate.h"
#include "multiscale/view.h"

#include <cstddef>
#include <sstream>
#include <stdexcept>

#define MS_CUDA_CHECK(expr)                                                              \
  do {                                                                                   \
    cudaError_t err_ = (expr);                                                           \
    if (err_ != cudaSuccess) {                                                           \
      std::ostringstream os_;                                                            \
      os_ << "CUDA error '" << cudaGetErrorString(err_) << "' at " << __FILE__ << ":"     \
          << __LINE__ << " in " #expr;                                                   \
      throw std::runtime_error(os_.str());                                               \
    }                                                                                    \
  } while (0)

namespace ms::cuda {

template <class T>
struct DeviceArray {
  T* p = nullptr;
  size_t n = 0;
  explicit DeviceArray(size_t count) : n(count) {
    if (count) MS_CUDA_CHECK(cudaMalloc(&p, count * sizeof(T)));
  }
  ~DeviceArray() {
    if (p) cudaFree(p);
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
};

// Calls body(x, y, xn, yn, S) with the views of path p: registers for fixed-size models, and
// for models whose size is a runtime parameter the columns of `scratch`, laid out
// [8 blocks][component][n] with stride n (coalesced): x|y, xn|yn, f, f0, a, g, b, z.
// A model as kernels receive it: catalogue models as they are; a surrogate with its parameters
// and tables copied to the device and its pointers moved there.
template <class M>
struct DeviceModel {
  M m;
  explicit DeviceModel(const M& host) : m(host) {}
};
template <class Real>
struct DeviceModel<SurrogateModel<Real>> {
  SurrogateModel<Real> m;
  DeviceArray<Real> params, tables;
  explicit DeviceModel(const SurrogateModel<Real>& host)
      : m(host), params(static_cast<size_t>(host.n_params)),
        tables(host.table ? static_cast<size_t>(host.n_grid * 4 * host.n_groups()) : 0) {
    MS_CUDA_CHECK(cudaMemcpy(params.p, host.p, params.n * sizeof(Real), cudaMemcpyHostToDevice));
    if (tables.n) MS_CUDA_CHECK(cudaMemcpy(tables.p, host.table, tables.n * sizeof(Real), cudaMemcpyHostToDevice));
    m.p = params.p;
    m.table = tables.n ? tables.p : nullptr;
  }
};

// Block models (surrogates) keep a contiguous row per path in `scratch`:
// [x | xn | f | f0 | a (nx * nx) | z | block work], so block_coefficients<1> reads x and writes
// f and a in place; the work starts right after z (block_work_of).
template <class M>
MS_HOST_DEVICE int64_t block_row_len(const M& m) {
  if constexpr (block_eval_v<M>) {
    const int nx = m.nx();
    return 5 * static_cast<int64_t>(nx) + static_cast<int64_t>(nx) * nx + m.work_layout(1).total;
  } else {
    (void)m;
    return 0;
  }
}

template <class M, class Real, class Body>
__device__ void with_path_views(const M& m, int64_t n, int64_t p, Real* scratch, Body&& body) {
  if constexpr (block_eval_v<M>) {
    using V = View<Real, 1>;
    const int nx = m.nx();
    Real* r = scratch + p * block_row_len(m);
    const StepScratch<V> S{V{r + 2 * nx}, V{r + 3 * nx}, V{r + 4 * nx}, V{r}, V{r}, V{r + 4 * nx + nx * nx}};
    body(V{r}, V{r}, V{r + nx}, V{r + nx}, S);  // no fast variables: y, g, b are empty
  } else if constexpr (M::kNX > 0 && M::kNY >= 0) {
    constexpr int NX = M::kNX, NY = M::kNY > 0 ? M::kNY : 1;
    Real x[NX], y[NY], xn[NX], yn[NY], f[NX], f0[NX], a[NX], g[NY], b[NY], z[NX + NY];
    using V = View<Real, 1>;
    const StepScratch<V> S{V{f}, V{f0}, V{a}, V{g}, V{b}, V{z}};
    body(V{x}, V{y}, V{xn}, V{yn}, S);
  } else {
    using V = View<Real, 0>;
    const int nx = m.nx();
    const int64_t blk = static_cast<int64_t>(nx + m.ny()) * n;
    Real* base = scratch + p;
    auto at = [&](int j, int off) { return V{base + j * blk + static_cast<int64_t>(off) * n, n}; };
    const StepScratch<V> S{at(2, 0), at(3, 0), at(4, 0), at(5, 0), at(6, 0), at(7, 0)};
    body(at(0, 0), at(0, nx), at(1, 0), at(1, nx), S);
  }
}

}  // namespace ms::cuda
