// Host/device portability macros shared by every header-only numerics file.
// The same source is compiled by the host C++ compiler (OpenMP launchers) and by nvcc.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define MS_HOST_DEVICE __host__ __device__
#define MS_FORCEINLINE __forceinline__
#else
#define MS_HOST_DEVICE
#if defined(__GNUC__) || defined(__clang__)
#define MS_FORCEINLINE inline __attribute__((always_inline))
#else
#define MS_FORCEINLINE inline
#endif
#endif

#define MS_INLINE MS_HOST_DEVICE MS_FORCEINLINE

namespace ms {

// Branch-free finiteness test that survives vectorisation (NaN and +-inf give false).
// The project never compiles with -ffinite-math-only, so this is not folded away.
template <class Real>
MS_INLINE bool is_finite(Real v) {
  return (v - v) == Real(0);
}

}  // namespace ms
