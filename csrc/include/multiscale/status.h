// The registry of per-path result codes: the one place each code gets its value and meaning.
// Kernels never throw: they record one code per path and the Python layer decides whether to
// raise (throw=True) or report. Two code spaces:
//   Status   per path of a simulation or frozen-x average (simulate, frozen_average)
//   Outcome  how a first-passage segment ended (estimators/first_passage.h)
// The bindings export both tables (_core.status_codes(), _core.outcome_codes()); the Python
// mirror is multiscale/_status.py, and tests/test_codes.py checks that the two agree. Codes
// are part of saved datasets (CF flag_values / flag_meanings): never renumber, only append.
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

enum Outcome : int8_t {
  OUTCOME_LO = 0,         // xi reached lo (set A)
  OUTCOME_HI = 1,         // xi reached hi (set B)
  OUTCOME_LEVEL = 2,      // xi exceeded the stopping level (AMS branching point), not in A or B
  OUTCOME_MAX_STEPS = 3,  // step budget spent first (also: the run was interrupted first)
  OUTCOME_NONFINITE = 4,  // the state became NaN/inf; the last finite state is kept
};

// Name of each code, indexed by the code (the order of CF flag_meanings).
struct CodeName {
  int code;
  const char* name;
};

constexpr CodeName kStatusCodes[] = {
    {STATUS_OK, "OK"},
    {STATUS_NONFINITE, "NONFINITE"},
    {STATUS_MAX_STEPS, "MAX_STEPS"},
    {STATUS_INTERRUPTED, "INTERRUPTED"},
    {STATUS_INVALID, "INVALID"},
};

constexpr CodeName kOutcomeCodes[] = {
    {OUTCOME_LO, "LO"},
    {OUTCOME_HI, "HI"},
    {OUTCOME_LEVEL, "LEVEL"},
    {OUTCOME_MAX_STEPS, "MAX_STEPS"},
    {OUTCOME_NONFINITE, "NONFINITE"},
};

template <int N>
constexpr bool codes_are_indices(const CodeName (&t)[N]) {
  for (int i = 0; i < N; ++i)
    if (t[i].code != i) return false;
  return true;
}
static_assert(codes_are_indices(kStatusCodes), "kStatusCodes: code i must sit at index i");
static_assert(codes_are_indices(kOutcomeCodes), "kOutcomeCodes: code i must sit at index i");

}  // namespace ms
