"""Build and load the C kernels (kernels/csrc/*.c) as a plain shared library, on first use.

    lib = load("spmm")   # ctypes.CDLL, or None (logged once) when it cannot be built

The library is compiled with `cc -O3 -march=native -shared -fPIC` into a cache
folder, keyed by a hash of the source, the compiler, the flags and the CPU's
feature flags (so a cache shared between machines never loads code built for
another CPU). A fresh clone needs no prebuilt binary: the first call compiles
(about 2 s), later processes load the cached file. Concurrent builders write
to their own temporary file and rename it into place.

Environment: SPARSEWAVE_KERNEL_CACHE (the cache folder; default
$XDG_CACHE_HOME/sparsewave/kernels or ~/.cache/sparsewave/kernels, else a
folder under the temp dir), CC (the compiler; default cc, then gcc),
SPARSEWAVE_NO_C_KERNELS=1 (never build or load: the numba paths run).
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

log = logging.getLogger(__name__)
SRC = Path(__file__).resolve().parent / "csrc"
FLAGS = ("-O3", "-march=native", "-shared", "-fPIC", "-std=gnu11")
_LOCK = threading.Lock()
_LOADED: dict[tuple, ctypes.CDLL | None] = {}


class BuildError(RuntimeError):
    """The C library could not be built or loaded."""


def compiler() -> str | None:
    """The C compiler to use: $CC, else cc, else gcc; None if there is none."""
    for name in filter(None, (os.environ.get("CC"), "cc", "gcc")):
        path = shutil.which(name)
        if path:
            return path
    return None


def cache_dir() -> Path:
    env = os.environ.get("SPARSEWAVE_KERNEL_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or (Path.home() / ".cache")
    return Path(base) / "sparsewave" / "kernels"


def _cpu_flags() -> str:
    """The CPU's feature flags (what -march=native compiles for)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.machine() + platform.processor()


def _writable(d: Path) -> Path:
    try:
        d.mkdir(parents=True, exist_ok=True)
        if os.access(d, os.W_OK):
            return d
    except OSError:
        pass
    d = Path(tempfile.gettempdir()) / f"sparsewave-kernels-{os.getuid() if hasattr(os, 'getuid') else 0}"
    d.mkdir(parents=True, exist_ok=True)
    return d


def build(name: str, extra_flags: tuple[str, ...] = (), out_dir: Path | None = None) -> Path:
    """Compile csrc/<name>.c (cached) and return the library's path; BuildError on failure."""
    src = SRC / f"{name}.c"
    cc = compiler()
    if cc is None:
        raise BuildError("no C compiler (set CC, or install gcc)")
    if not src.exists():
        raise BuildError(f"missing source {src}")
    flags = (*FLAGS, *extra_flags)
    key = hashlib.sha256(b"\0".join([src.read_bytes(), cc.encode(), " ".join(flags).encode(),
                                     _cpu_flags().encode()])).hexdigest()[:16]
    d = _writable(out_dir or cache_dir())
    lib = d / f"{name}-{key}.so"
    if lib.exists():
        return lib
    tmp = d / f".{lib.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    cmd = [cc, *flags, "-o", str(tmp), str(src)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BuildError(f"{' '.join(cmd)}: {e}") from e
    if res.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise BuildError(f"{' '.join(cmd)} failed: {res.stderr.strip()[-400:]}")
    os.replace(tmp, lib)
    return lib


def load(name: str, extra_flags: tuple[str, ...] = ()) -> ctypes.CDLL | None:
    """The built library (once per process), or None after one logged warning."""
    key = (name, tuple(extra_flags))
    with _LOCK:
        if key not in _LOADED:
            lib = None
            if os.environ.get("SPARSEWAVE_NO_C_KERNELS", "") not in ("", "0"):
                log.info("C kernels disabled by SPARSEWAVE_NO_C_KERNELS; using numba")
            else:
                try:
                    lib = ctypes.CDLL(str(build(name, extra_flags)))
                except (BuildError, OSError) as e:
                    log.warning("kernels: C kernels unavailable, using numba (%s)", e)
            _LOADED[key] = lib
        return _LOADED[key]
