"""numba for this package's kernels, loaded without SciPy's linear-algebra start-up.

Every module with numba kernels imports numba from here. When numba first loads its NumPy
array functions (``numba.np.arraymath``, on the first kernel call of a process), it imports
``scipy.linalg.cython_blas`` to decide whether ``np.correlate`` and ``np.convolve`` may call
BLAS. With SciPy installed that imports all of ``scipy.linalg`` (SciPy's array-API layer
imports ``numpy.f2py`` on the way): 0.16 s on one machine and 0.38 s on another, on the first
kernel call of every command. None of this package's kernels uses BLAS, so the probe is
answered "no BLAS" here: those two functions then use numba's own loop. BLAS itself is not
blocked: ``np.dot`` and the other linear-algebra functions look for SciPy when they are
compiled, and import it then. The refusal holds only in the thread that loads numba's array
functions and only while it does (a finder on ``sys.meta_path``): another thread importing
SciPy at that moment gets it.
"""

from __future__ import annotations

import importlib.abc
import sys
import threading
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

import numba
from numba import njit, prange

__all__ = ["njit", "numba", "prange"]

_LINALG = "scipy.linalg"
_probing = threading.local()


class _SkipLinalg(importlib.abc.MetaPathFinder):
    """Refuses ``scipy.linalg`` to the thread loading numba's array functions, while it does.

    Other threads import it as usual, even at the same moment. Installed once and never
    removed (removing a finder while another thread walks ``sys.meta_path`` can make that
    thread skip the next finder); for every other import it returns None at once.
    """

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        if getattr(_probing, "active", False) and (
            fullname == _LINALG or fullname.startswith(_LINALG + ".")
        ):
            raise ModuleNotFoundError(f"{fullname} skipped for numba's BLAS probe", name=fullname)
        return None


def _array_functions_without_blas_probe() -> None:
    if "numba.np.arraymath" in sys.modules or _LINALG in sys.modules:
        return  # already loaded, or SciPy's linear algebra already imported: nothing to save
    if not any(isinstance(f, _SkipLinalg) for f in sys.meta_path):
        sys.meta_path.insert(0, _SkipLinalg())
    _probing.active = True
    try:
        import numba.np.arraymath  # noqa: F401
    finally:
        _probing.active = False


_array_functions_without_blas_probe()
