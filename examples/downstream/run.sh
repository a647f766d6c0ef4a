#!/usr/bin/env bash
# Build and run every downstream example on one exported surrogate.
#   bash examples/downstream/run.sh [SURROGATE.h5 | SURROGATE.mss]
# Without an argument it uses multiscale-run/surrogate.mss from `multiscale run`, running that
# first if needed. Writes the builds to examples/downstream/build/.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="${PYTHON:-python}"
src="${1:-multiscale-run/surrogate.mss}"
if [[ ! -f "$src" ]]; then
  echo "== no $src: running the main job first"
  multiscale run --out multiscale-run
fi
mss="$here/build/surrogate.mss"
mkdir -p "$here/build"
if [[ "$src" == *.h5 ]]; then
  $py -c "import sys, multiscale as ms, multiscale.export as e; e.export_surrogate(ms.load_surrogate(sys.argv[1]), sys.argv[2])" "$src" "$mss"
else
  cp "$src" "$mss"
fi
echo "== C and C++"
bash "$here/build.sh" "$here/build"
printf "3\n-1.0\n0.0\n1.0\n" | "$here/build/evaluate_c" "$mss" -1
"$here/build/euler_maruyama" "$mss" 2000 500 0.01
echo "== SciPy (solve_ivp on the drift, through the C library)"
$py "$here/scipy_solve_ivp.py" "$mss"
echo "== PyTorch (TorchScript, loaded without multiscale)"
$py -c "import sys, multiscale as ms, multiscale.export as e; e.export_torchscript(e.load_export(sys.argv[1]), sys.argv[2])" "$mss" "$here/build/surrogate.pt"
$py -c "import sys, torch; m = torch.jit.load(sys.argv[1]); print('drift at x = -1, 0, 1:', m.drift(torch.tensor([[-1.0], [0.0], [1.0]], dtype=torch.float64)).flatten().tolist())" "$here/build/surrogate.pt"
if command -v gfortran >/dev/null; then
  echo "== Fortran"
  bash "$here/fortran/build.sh" "$here/build/fortran"
  "$here/build/fortran/euler_maruyama" "$mss" 2000 500 0.01
else
  echo "== Fortran skipped: gfortran not installed"
fi
