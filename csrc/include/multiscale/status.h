// Per-path status codes. Kernels never throw: they record one of these per path and the
// Python layer decides whether to raise (throw=True) or report.
#pragma once
#include <cstdint>

namespace ms {

enum Status : int8_t {
  STATUS_OK = 0,          // path ran to the end
  STATUS_NONFINITE = 1,   // state became NaN/inf; path frozen at its last finite state
  STATUS_MAX_STEPS = 2,   // a stopping-time kernel hit its step budget before the event
  STATUS_INTERRUPTED = 3, // run stopped by the user (Ctrl-C) before this path finished
  STATUS_INVALID = 4,     // inputs for this path were rejected (e.g. non-finite initial state)
};

inline const char* status_name(int s) {
  switch (s) {
    case STATUS_OK: return "OK";
    case STATUS_NONFINITE: return "NONFINITE";
    case STATUS_MAX_STEPS: return "MAX_STEPS";
    case STATUS_INTERRUPTED: return "INTERRUPTED";
    case STATUS_INVALID: return "INVALID";
    default: return "UNKNOWN";
  }
}

}  // namespace ms
