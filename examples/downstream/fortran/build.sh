#!/usr/bin/env bash
# Build the Fortran examples (module multiscale_surrogate over the C API, euler_maruyama,
# check_eval) against the multiscale C API library libmultiscale_surrogate.
#
#   bash examples/downstream/fortran/build.sh [OUTDIR]      (default: this folder's build/)
#
# The header and library folders come from MULTISCALE_INCLUDE / MULTISCALE_LIBDIR when set,
# otherwise from the Python package:
#   python -c "import multiscale.export as e; print(e.get_include()); print(e.get_library_dir())"
# (PYTHON selects the interpreter, FC the Fortran compiler; default gfortran). The programs are
# linked with -lmultiscale_surrogate and an rpath to the library folder, so they run without
# LD_LIBRARY_PATH.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/build}"
fc="${FC:-gfortran}"
die() { echo "build.sh: error: $*" >&2; exit 1; }

command -v "$fc" >/dev/null 2>&1 ||
  die "Fortran compiler '$fc' not found: install gfortran (e.g. apt-get install gfortran) or set FC"

inc="${MULTISCALE_INCLUDE:-}"
lib="${MULTISCALE_LIBDIR:-}"
if [[ -z "$inc" || -z "$lib" ]]; then
  py="${PYTHON:-python}"
  command -v "$py" >/dev/null 2>&1 || die "'$py' not found; set PYTHON, or MULTISCALE_INCLUDE and MULTISCALE_LIBDIR"
  dirs="$("$py" -c "import multiscale.export as e; print(e.get_include()); print(e.get_library_dir())")" ||
    die "could not locate the multiscale C API with $py (is multiscale installed?); set MULTISCALE_INCLUDE and MULTISCALE_LIBDIR"
  { read -r py_inc; read -r py_lib; } <<<"$dirs"
  inc="${inc:-$py_inc}"
  lib="${lib:-$py_lib}"
fi
[[ -f "$inc/multiscale/surrogate/c_api.h" ]] || die "no multiscale/surrogate/c_api.h under '$inc'"
[[ -f "$lib/libmultiscale_surrogate.so" ]] || die "no libmultiscale_surrogate.so in '$lib'"

mkdir -p "$out"
out="$(cd "$out" && pwd)"
flags=(-O2 -std=f2008 -Wall)
# Compile inside OUTDIR: the module file (.mod) and object go there, the source folder stays
# clean, and no stale multiscale_surrogate.mod in the caller's folder can be picked up.
(
  cd "$out"
  "$fc" "${flags[@]}" -J "$out" -c "$here/multiscale_surrogate.f90" -o "$out/multiscale_surrogate.o"
  for prog in euler_maruyama check_eval; do
    "$fc" "${flags[@]}" -I "$out" "$here/$prog.f90" "$out/multiscale_surrogate.o" \
      -L"$lib" -lmultiscale_surrogate -Wl,-rpath,"$lib" -o "$out/$prog"
  done
)
echo "built $out/euler_maruyama and $out/check_eval (C API header $inc, library $lib)"
