"""Just-in-time builds of user models: a generated C++ model header compiled, with the package's
own kernel sources, into an extension module with the same functions as ``multiscale._core``.

The module is cached on disk under a key that covers everything that changes the machine code
(header text, compiler identity, flags, package and pybind11 versions, Python ABI), so a second
run or a second process loads it in milliseconds. A file lock serialises concurrent first use;
the library is compiled under a temporary name and renamed into place; a JSON sidecar holds its
SHA-256, so a truncated or altered library is rebuilt, never loaded.
"""
from __future__ import annotations

import fcntl
import hashlib
import importlib.machinery
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from types import ModuleType

from .._errors import ModelCompileError

_TUS = ("bindings/module.cpp", "cpu/simulate_cpu.cpp", "cpu/average_cpu.cpp", "cpu/passage_cpu.cpp",
        "cpu/jet_cpu.cpp")
_FLAGS = ("-O3", "-DNDEBUG", "-std=gnu++17", "-fPIC", "-fno-math-errno", "-ffp-contract=off", "-march=native",
          "-fopenmp", "-fvisibility=hidden")
_LOADED: dict[str, ModuleType] = {}


def source_dir() -> Path:
    """The kernel sources: installed with the package (``multiscale/_csrc``) or, in a source
    checkout, the repository's ``csrc``."""
    pkg = Path(__file__).resolve().parents[1]
    for cand in (pkg / "_csrc", pkg.parent / "csrc"):
        if (cand / "include" / "multiscale" / "dispatch.h").is_file():
            return cand
    raise ModelCompileError("the kernel sources are not installed (multiscale/_csrc); reinstall the package")


def cache_dir() -> Path:
    root = os.environ.get("MULTISCALE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "multiscale")
    return Path(root) / "jit"


def _compiler() -> tuple[str, str]:
    cxx = os.environ.get("CXX", "c++")
    try:
        out = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise ModelCompileError(f"no C++ compiler ({cxx!r}) to build user models: {e}") from None
    return cxx, out.splitlines()[0] if out else cxx


def _cuda_plan() -> dict | None:
    """How to build the CUDA launchers too: where the installed package has CUDA kernels (or
    ``MULTISCALE_JIT_CUDA=1``) and nvcc is found; None builds the CPU kernels only."""
    from .._device import build_info

    bi = build_info()
    want = os.environ.get("MULTISCALE_JIT_CUDA", "auto")
    if want == "0" or (want == "auto" and not bi["cuda_compiled"]):
        return None
    nvcc = shutil.which(os.environ.get("NVCC", "nvcc"))
    if nvcc is None:
        if want == "1":
            raise ModelCompileError("MULTISCALE_JIT_CUDA=1 but nvcc was not found")
        return None
    archs = [a for a in (bi["cuda_architectures"] or "80,90").split(",") if a]
    roots = [Path(r) for r in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")) if r]
    roots += [Path(nvcc).resolve().parents[1], Path("/usr/local/cuda")]
    lib = next((d for r in roots for d in (r / "lib64", r / "targets" / "x86_64-linux" / "lib")
                if (d / "libcudart_static.a").is_file()), None)
    if lib is None:
        raise ModelCompileError(f"libcudart_static.a not found beside {nvcc}")
    version = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout.strip().splitlines()[-1]
    return {"nvcc": nvcc, "archs": archs, "lib": str(lib), "version": version}


def _key(header: str, compiler_id: str) -> str:
    import pybind11

    from .._device import build_info

    h = hashlib.sha256()
    for part in (header, compiler_id, " ".join(_FLAGS), build_info()["version"], pybind11.__version__,
                 sysconfig.get_config_var("EXT_SUFFIX") or "", _sources_digest(), json.dumps(_cuda_plan())):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def _sources_digest() -> str:
    """Kernel sources change the machine code too (a development checkout edits them)."""
    src = source_dir()
    h = hashlib.sha256()
    for p in sorted(src.rglob("*")):
        if p.suffix in (".h", ".cpp", ".cu", ".cuh") and p.is_file():  # the CUDA build too
            h.update(str(p.relative_to(src)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def _version() -> str:
    from .._device import build_info

    return build_info()["version"]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _load(path: Path, name: str) -> ModuleType:
    loader = importlib.machinery.ExtensionFileLoader(name, str(path))
    spec = importlib.util.spec_from_file_location(name, str(path), loader=loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def build_module(header: str, *, label: str = "user model", verbose: bool = False) -> ModuleType:
    """The extension module for a generated model header, from the cache or compiled now.

    Parameters
    ----------
    header : str
        C++ defining the model template(s) and ``MS_USER_MODEL_LIST(X)``.
    label : str
        Named in messages (the model's name).
    """
    cxx, compiler_id = _compiler()
    key = _key(header, compiler_id)
    if key in _LOADED:
        return _LOADED[key]
    name = f"_msjit_{key[:20]}"
    folder = cache_dir() / key[:32]
    folder.mkdir(parents=True, exist_ok=True)
    lib = folder / f"{name}{sysconfig.get_config_var('EXT_SUFFIX')}"
    meta = folder / "build.json"
    with open(folder / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second process waits here, then finds the library
        if not _valid(lib, meta, key):
            _compile(header, cxx, compiler_id, name, key, lib, meta, label, verbose)
        mod = _load(lib, name)
    _LOADED[key] = mod
    return mod


_LIBS: dict[str, object] = {}


def build_library(header: str, *, tu: str, label: str = "resolved model", verbose: bool = False) -> object:
    """A plain shared library (no Python, no OpenMP runtime) of the one kernel source ``tu`` with a
    generated model header, from the cache or compiled now, loaded with :mod:`ctypes`: a build
    of seconds where only a model's functions are needed (the ring surrogate's resolved part,
    ``cpu/local_resolved_jit.cpp``), cached like :func:`build_module`.

    Parameters
    ----------
    header : str
        C++ defining the model template and ``MS_USER_MODEL_LIST(X)`` (:func:`._codegen.generate_header`).
    tu : str
        The kernel source, relative to :func:`source_dir`.
    label : str
        Named in messages.

    Returns
    -------
    ctypes.CDLL
    """
    import ctypes

    cxx, compiler_id = _compiler()
    key = _key(f"{header}\0library:{tu}", compiler_id)
    if key in _LIBS:
        return _LIBS[key]
    folder = cache_dir() / key[:32]
    folder.mkdir(parents=True, exist_ok=True)
    lib = folder / f"_msjitlib_{key[:20]}.so"
    meta = folder / "build.json"
    with open(folder / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _valid(lib, meta, key):
            src = source_dir()
            t0 = time.perf_counter()
            flags = [f for f in _FLAGS if f != "-fopenmp"] + ["-fopenmp-simd"]  # omp simd, no libgomp
            with tempfile.TemporaryDirectory(dir=folder, prefix=".build-") as tmp:
                hdr = Path(tmp) / "user_model.h"
                hdr.write_text(header)
                out = Path(tmp) / lib.name
                r = subprocess.run([cxx, *flags, "-shared", f"-I{src / 'include'}", f'-DMS_USER_MODEL_HEADER="{hdr}"',
                                    str(src / tu), "-o", str(out)], capture_output=True, text=True)
                if r.returncode != 0:
                    raise ModelCompileError(f"{label}: the generated C++ did not compile:\n"
                                            + _first_errors(r.stderr, hdr))
                digest = _sha256(out)
                os.replace(out, lib)
            doc = {"key": key, "sha256": digest, "compiler": compiler_id, "flags": flags, "label": label, "tu": tu,
                   "seconds": round(time.perf_counter() - t0, 2), "python": sys.version.split()[0]}
            _record_build(meta, doc, label, lib, verbose)
        handle = ctypes.CDLL(str(lib))
    _LIBS[key] = handle
    return handle


def _valid(lib: Path, meta: Path, key: str) -> bool:
    try:
        m = json.loads(meta.read_text())
    except (OSError, ValueError):
        return False
    return m.get("key") == key and lib.is_file() and _sha256(lib) == m.get("sha256")


def _compile(header: str, cxx: str, compiler_id: str, name: str, key: str, lib: Path, meta: Path,
             label: str, verbose: bool) -> None:
    import pybind11

    src = source_dir()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=lib.parent, prefix=".build-") as tmp:
        tmpd = Path(tmp)
        hdr = tmpd / "user_model.h"
        hdr.write_text(header)
        common = [cxx, *_FLAGS, f"-I{src / 'include'}", "-isystem", sysconfig.get_paths()["include"],
                  "-isystem", pybind11.get_include(), f'-DMS_USER_MODEL_HEADER="{hdr}"',
                  f"-DMS_MODULE_NAME={name}", f'-DMULTISCALE_VERSION="{_version()}"',
                  f'-DMULTISCALE_CXX_FLAGS="{" ".join(_FLAGS[:1] + _FLAGS[4:7])}"']
        cuda = _cuda_plan()
        if cuda is not None:
            common.insert(1, "-DMULTISCALE_HAVE_CUDA")
            common.append(f'-DMULTISCALE_CUDA_ARCHS="{",".join(cuda["archs"])}"')
        # The translation units compile in parallel; the link waits for all of them.
        procs = []
        for tu in _TUS:
            obj = tmpd / (Path(tu).stem + ".o")
            procs.append((tu, obj, subprocess.Popen([*common, "-c", str(src / tu), "-o", str(obj)],
                                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
        if cuda is not None:  # the same model as device code, with the flags of the package build
            gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in cuda["archs"]]
            for tu in ("cuda/simulate_cuda.cu", "cuda/passage_cuda.cu"):
                obj = tmpd / (Path(tu).stem + ".cu.o")
                cmd = [cuda["nvcc"], "-std=c++17", "--expt-relaxed-constexpr", "-O3", "-Xcompiler=-fopenmp,-fPIC",
                       *gencode, f"-I{src / 'include'}", f'-DMS_USER_MODEL_HEADER="{hdr}"', "-c", str(src / tu),
                       "-o", str(obj)]
                procs.append((tu, obj, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                         text=True)))
        errors = []
        for tu, _, p in procs:
            _, err = p.communicate()
            if p.returncode != 0:
                errors.append(_first_errors(err, hdr))
        if errors:
            raise ModelCompileError(f"{label}: the generated C++ did not compile:\n" + "\n".join(errors))
        out = tmpd / lib.name
        link = [cxx, "-shared", "-fopenmp", *(str(o) for _, o, _ in procs), "-o", str(out),
                "-Wl,--exclude-libs,ALL"]
        if cuda is not None:
            link += [f"-L{cuda['lib']}", "-lcudart_static", "-ldl", "-lrt", "-lpthread"]
        r = subprocess.run(link, capture_output=True, text=True)
        if r.returncode != 0:
            raise ModelCompileError(f"{label}: linking failed:\n{r.stderr[-2000:]}")
        with open(out, "rb+") as f:
            os.fsync(f.fileno())
        digest = _sha256(out)
        os.replace(out, lib)
    doc = {"key": key, "sha256": digest, "compiler": compiler_id, "flags": list(_FLAGS), "label": label,
           "cuda": cuda,
           "seconds": round(time.perf_counter() - t0, 2), "python": sys.version.split()[0]}
    _record_build(meta, doc, label, lib, verbose)


def _record_build(meta: Path, doc: dict, label: str, lib: Path, verbose: bool) -> None:
    """Write a build's JSON sidecar atomically (and say so when verbose)."""
    tmp_meta = meta.with_name(".build.json.tmp")
    tmp_meta.write_text(json.dumps(doc, indent=1))
    os.replace(tmp_meta, meta)
    if verbose:
        print(f"compiled {label} in {doc['seconds']} s -> {lib}", file=sys.stderr)


def _first_errors(stderr: str, header: Path, limit: int = 12) -> str:
    """The compiler's first errors; an error in the generated model is reported with the user's
    field and expression (the ``// model`` comment above the generated line) and that line."""
    from ._codegen import MODEL_COMMENT

    try:
        gen = header.read_text().splitlines()
    except OSError:
        gen = []
    out: list[str] = []
    for ln in stderr.splitlines():
        if str(header) not in ln and "error" not in ln:
            continue
        m = re.match(re.escape(str(header)) + r":(\d+):(?:\d+:)?\s*(.*)", ln)
        if m and 0 < int(m.group(1)) <= len(gen):
            n = int(m.group(1))
            where = next((gen[i].strip()[len(MODEL_COMMENT):] for i in range(n - 1, -1, -1)
                          if gen[i].strip().startswith(MODEL_COMMENT)), None)
            if where is not None and "error" in m.group(2):
                out.append(f"in {where}\n  {m.group(2)}\n  generated line {n}: {gen[n - 1].strip()}")
                continue
        out.append(ln.replace(str(header), "<model>"))
    return "\n".join(out[:limit]) or stderr[-2000:]


def clear_cache() -> int:
    """Remove every cached user-model build; returns how many."""
    root = cache_dir()
    n = 0
    if root.is_dir():
        for d in root.iterdir():
            shutil.rmtree(d, ignore_errors=True)
            n += 1
    return n
