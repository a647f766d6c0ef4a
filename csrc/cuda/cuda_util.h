// Shared by the CUDA launchers: error checking with file and line, and an owning device array.
#pragma once
#include <cuda_runtime.h>

#include "multiscale/integrators/euler_maruyama.h"
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
template <class M, class Real, class Body>
__device__ void with_path_views(const M& m, int64_t n, int64_t p, Real* scratch, Body&& body) {
  if constexpr (M::kNX > 0 && M::kNY >= 0) {
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
