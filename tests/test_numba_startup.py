"""The package's numba start-up: no SciPy linear algebra for kernels that use no BLAS."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str) -> str:
    """Stdout of `script` in a fresh interpreter that imports this tree's nowcast_cli."""
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


SCRIPT = r"""
import sys
import numpy as np
from nowcast_cli.metrics import _kernels

f = np.full((1, 1, 130), 9, np.uint8)
o = np.full((1, 130), 9, np.uint8)
v = np.ones((1, 130), np.uint8)
out = _kernels.forecast_counts(f, o, v, np.zeros((1, 1), np.int64), np.array([5], np.uint8))
assert out.tolist() == [[[130, 130]]], out
print("kernel-loaded-scipy-linalg", "scipy.linalg" in sys.modules)

import numba

@numba.njit
def dot(a, b):
    return np.dot(a, b)

a = np.arange(6.0).reshape(2, 3)
assert np.array_equal(dot(a, a.T), a @ a.T)  # BLAS still works: SciPy imported when compiled
print("dot-loaded-scipy-linalg", "scipy.linalg" in sys.modules)
"""


def test_kernels_load_without_scipy_linalg_and_blas_still_works() -> None:
    import scipy  # noqa: F401  (a dev dependency: the probe only costs anything with SciPy)

    out = _run(SCRIPT)
    assert "kernel-loaded-scipy-linalg False" in out, out
    assert "dot-loaded-scipy-linalg True" in out, out


SCOPED = r"""
import sys, threading
from nowcast_cli import _numba

_numba._probing.active = True  # as while numba's array functions load, in this thread only
try:
    import scipy.linalg
    print("main-thread-got-linalg")
except ImportError:
    print("main-thread-refused")
got = []
t = threading.Thread(target=lambda: got.append(__import__("scipy.linalg").linalg.__name__))
t.start()
t.join()
print("other-thread-got", got)
_numba._probing.active = False
import scipy.linalg
print("after-got", scipy.linalg.__name__)
"""


def test_scipy_linalg_is_refused_only_to_the_loading_thread_and_only_meanwhile() -> None:
    out = _run(SCOPED)
    assert "main-thread-refused" in out, out
    assert "other-thread-got ['scipy.linalg']" in out, out
    assert "after-got scipy.linalg" in out, out
