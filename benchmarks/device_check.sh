#!/usr/bin/env bash
# On a lent GPU machine (device tool): build for the card, then run the CUDA tests and a GPU
# campaign. Logs go to $OUT. Usage: [PYTEST_K="campaign or ams"] bash benchmarks/device_check.sh
set -uo pipefail
OUT=${OUT:-/tmp/device-out}
mkdir -p "$OUT"
repo=$(pwd)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
t0=$(date +%s)
# A direct CMake build (the lent machine's pip cannot always import scikit-build-core).
gen=$(command -v ninja >/dev/null && echo Ninja || echo "Unix Makefiles")
cmake -S . -B build/device -G "$gen" -DCMAKE_BUILD_TYPE=Release -DMULTISCALE_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES=90 -Dpybind11_DIR="$(python -c 'import pybind11; print(pybind11.get_cmake_dir())')" \
  -DPython_EXECUTABLE="$(command -v python)" > "$OUT/build.log" 2>&1 \
  && cmake --build build/device --target _core -j 16 >> "$OUT/build.log" 2>&1 \
  || { tail -40 "$OUT/build.log"; exit 1; }
cp build/device/_core*.so multiscale/
echo "build: $(( $(date +%s) - t0 )) s"
export PYTHONPATH="$repo"
echo "exported std:: symbols: $(nm -D --defined-only build/device/_core*.so | grep -c _ZNSt)"
# numpy first: before the module hid its static archives' symbols this crashed (CMakeLists.txt)
python -X faulthandler -c 'import numpy, json, multiscale; print(json.dumps(multiscale.build_info()))' || exit 1
timeout 420 python -m pytest tests/test_cuda.py -q -p no:cacheprovider -rs ${PYTEST_K:+-k "$PYTEST_K"} 2>&1 | tee "$OUT/test_cuda.log" | tail -25
