"""numba for this package's kernels, loaded without SciPy's linear-algebra start-up.

Every module with numba kernels imports numba from here. When numba first loads its NumPy
array functions (``numba.np.arraymath``, on the first kernel call of a process), it imports
``scipy.linalg.cython_blas`` to decide whether ``np.correlate`` and ``np.convolve`` may call
BLAS. With SciPy installed that imports all of ``scipy.linalg`` (SciPy's array-API layer
imports ``numpy.f2py`` on the way): 0.16 s on one machine and 0.38 s on another, on the first
kernel call of every command. None of this package's kernels uses BLAS, so the probe is
answered "no BLAS" here: those two functions then use numba's own loop. BLAS itself is not
blocked: ``np.dot`` and the other linear-algebra functions look for SciPy when they are
compiled, and import it then.
"""

from __future__ import annotations

import sys

import numba
from numba import njit, prange

__all__ = ["njit", "numba", "prange"]

_PROBE = "scipy.linalg.cython_blas"


def _array_functions_without_blas_probe() -> None:
    if "numba.np.arraymath" in sys.modules or _PROBE in sys.modules:
        return  # already loaded, or SciPy's BLAS already imported: nothing to save
    sys.modules[_PROBE] = None  # type: ignore[assignment]  # "import" raises ImportError
    try:
        import numba.np.arraymath  # noqa: F401
    finally:
        if _PROBE in sys.modules and sys.modules[_PROBE] is None:
            del sys.modules[_PROBE]


_array_functions_without_blas_probe()
