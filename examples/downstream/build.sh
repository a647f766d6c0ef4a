#!/usr/bin/env bash
# Build the C and C++ downstream examples against the installed multiscale package.
#   bash examples/downstream/build.sh [OUTDIR]      (default: examples/downstream/build)
# Uses CMake's find_package(multiscale) when the package is installed (pip install .), else the
# compilers directly with multiscale.export.get_include() / get_library_dir().
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/build}"
mkdir -p "$out"
py="${PYTHON:-python}"
inc="${MULTISCALE_INCLUDE:-$($py -c 'import multiscale.export as e; print(e.get_include())')}"
lib="${MULTISCALE_LIBDIR:-$($py -c 'import multiscale.export as e; print(e.get_library_dir())')}"
cmake_dir="$($py -c 'import multiscale.export as e; print(e.get_cmake_dir())' 2>/dev/null || true)"
if [[ -n "$cmake_dir" && -z "${MULTISCALE_NO_CMAKE:-}" ]] && command -v cmake >/dev/null; then
  cmake -S "$here/cpp" -B "$out/cmake" -Dmultiscale_DIR="$cmake_dir" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$out/cmake" >/dev/null
  cp "$out/cmake/euler_maruyama" "$out/cmake/evaluate_c" "$out/"
  echo "built with CMake (find_package(multiscale) from $cmake_dir) into $out"
else
  ${CXX:-g++} -std=c++17 -O2 -I"$inc" "$here/cpp/euler_maruyama.cpp" -o "$out/euler_maruyama"
  ${CC:-gcc} -std=c99 -O2 -I"$inc" "$here/c/evaluate.c" -L"$lib" -lmultiscale_surrogate \
    -Wl,-rpath,"$lib" -o "$out/evaluate_c"
  echo "built with the compilers directly (include $inc, lib $lib) into $out"
fi
