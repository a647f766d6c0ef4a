// Exact, order-independent summation of doubles (host only).
//
// Ensemble statistics are sums over paths; a floating-point sum depends on the order of its
// terms, i.e. on thread count, chunking and MPI rank count. This accumulator keeps the sum as
// an exact fixed-point integer (2^-1074 resolution, 32-bit digits in int64 limbs with carry
// headroom), so merging accumulators is integer addition: associative and commutative. The
// conversion back to double (finite sums) is a fixed function of the canonical digits, hence bitwise
// reproducible whatever the order of additions. Cost: a handful of integer operations per add.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace ms {

class ExactSum {
 public:
  static constexpr int kLimbs = 68;  // digit i has weight 2^(32 i - 1074); top limb carries sign

  ExactSum() { clear(); }
  void clear() {
    std::memset(limb_, 0, sizeof limb_);
    pending_ = 0;
    pos_inf_ = neg_inf_ = nan_ = false;
  }

  // Non-finite terms follow IEEE semantics: any NaN, or +inf and -inf together, give NaN;
  // otherwise an infinity wins.
  void add(double v) {
    uint64_t b;
    std::memcpy(&b, &v, sizeof b);
    const int e = static_cast<int>((b >> 52) & 0x7ff);
    uint64_t mant = b & 0x000fffffffffffffULL;
    if (e == 0x7ff) {
      if (mant != 0) nan_ = true;
      else if (b >> 63) neg_inf_ = true;
      else pos_inf_ = true;
      return;
    }
    if (e == 0 && mant == 0) return;
    if (e != 0) mant |= 0x0010000000000000ULL;
    const int pos = (e == 0 ? 1 : e) - 1;  // bit position of mant's lsb relative to 2^-1074
    const int k = pos >> 5, sh = pos & 31;
    const unsigned __int128 w = static_cast<unsigned __int128>(mant) << sh;
    const int64_t d0 = static_cast<int64_t>(static_cast<uint64_t>(w) & 0xffffffffULL);
    const int64_t d1 = static_cast<int64_t>(static_cast<uint64_t>(w >> 32) & 0xffffffffULL);
    const int64_t d2 = static_cast<int64_t>(static_cast<uint64_t>(w >> 64));
    if (b >> 63) {
      limb_[k] -= d0;
      limb_[k + 1] -= d1;
      limb_[k + 2] -= d2;
    } else {
      limb_[k] += d0;
      limb_[k + 1] += d1;
      limb_[k + 2] += d2;
    }
    if (++pending_ >= (int64_t(1) << 29)) normalize();
  }

  void merge(const ExactSum& o) {
    pos_inf_ |= o.pos_inf_;
    neg_inf_ |= o.neg_inf_;
    nan_ |= o.nan_;
    for (int i = 0; i < kLimbs; ++i) limb_[i] += o.limb_[i];
    pending_ += o.pending_ + 1;
    if (pending_ >= (int64_t(1) << 29)) normalize();
  }

  // Canonical form: every limb but the top one in [0, 2^32).
  void normalize() {
    for (int i = 0; i < kLimbs - 1; ++i) {
      const int64_t carry = limb_[i] >> 32;  // arithmetic shift: floor division
      limb_[i] -= carry * (int64_t(1) << 32);
      limb_[i + 1] += carry;
    }
    pending_ = 0;
  }

  // Deterministic rounding of the exact value (within 1 ulp of it).
  double value() const {
    if (nan_ || (pos_inf_ && neg_inf_)) return std::nan("");
    if (pos_inf_) return HUGE_VAL;
    if (neg_inf_) return -HUGE_VAL;
    ExactSum t = *this;
    t.normalize();
    bool neg = t.limb_[kLimbs - 1] < 0;
    if (neg) {
      for (int i = 0; i < kLimbs; ++i) t.limb_[i] = -t.limb_[i];
      t.normalize();
    }
    int h = kLimbs - 1;
    while (h >= 0 && t.limb_[h] == 0) --h;
    if (h < 0) return 0.0;
    double r = 0.0;
    for (int i = h; i >= h - 2 && i >= 0; --i) {
      r = r * 4294967296.0 + static_cast<double>(t.limb_[i]);
    }
    const int low = h - 2 > 0 ? h - 2 : 0;
    r = std::ldexp(r, 32 * low - 1074);
    return neg ? -r : r;
  }

 private:
  int64_t limb_[kLimbs];
  int64_t pending_;
  bool pos_inf_, neg_inf_, nan_;
};

}  // namespace ms
