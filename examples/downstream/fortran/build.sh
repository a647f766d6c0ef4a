#!/usr/bin/env bash
# Build the Fortran examples against the installed multiscale package (C API library).
#   bash examples/downstream/fortran/build.sh [OUTDIR]    (default: this folder's build/)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/build}"
command -v "${FC:-gfortran}" >/dev/null || { echo "error: gfortran not found (apt-get install gfortran)" >&2; exit 1; }
py="${PYTHON:-python}"
lib="${MULTISCALE_LIBDIR:-$($py -c 'import multiscale.export as e; print(e.get_library_dir())')}"
mkdir -p "$out"
fc=(${FC:-gfortran} -O2 -std=f2008 -Wall -J "$out")
"${fc[@]}" -c "$here/multiscale_surrogate.f90" -o "$out/multiscale_surrogate.o"
for prog in euler_maruyama check_eval; do
  "${fc[@]}" "$here/$prog.f90" "$out/multiscale_surrogate.o" -L"$lib" -lmultiscale_surrogate \
    -Wl,-rpath,"$lib" -o "$out/$prog"
done
echo "built $out/euler_maruyama and $out/check_eval (library $lib)"
