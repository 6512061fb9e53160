"""Opening netCDF files and reading their attributes, shared by the parts of the netcdf reader.

Files are opened with xarray *undecoded* (``decode_cf=False``): each part decodes what it uses
with the CF library that does it (xarray's time coder, cf-units, pyproj), and the pixel values
are decoded through lookup tables in `nowcast_cli.io.netcdf.reader`.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from nowcast_cli.errors import MissingDependencyError

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
NETCDF3_SIGNATURES = (b"CDF\x01", b"CDF\x02", b"CDF\x05")
SUFFIXES = frozenset({".nc", ".nc4", ".netcdf", ".cdf"})
_WARNINGS_LOCK = threading.Lock()


class FileProblem(Exception):
    """A file-level reason, turned into a `BadFileError` naming the file."""


def kind_of(path: Path) -> str:
    """The xarray engine for a file's signature: "h5netcdf", "scipy" or "" (not netCDF)."""
    try:
        with path.open("rb") as f:
            head = f.read(2048 + 8)
    except OSError as exc:
        raise FileProblem(f"cannot read ({exc.strerror or exc})") from None
    if not head:
        raise FileProblem("empty file")
    if any(head[o : o + 8] == HDF5_SIGNATURE for o in (0, 512, 1024, 2048)):
        return "h5netcdf"
    if head[:4] in NETCDF3_SIGNATURES:
        return "scipy"
    return ""


def open_dataset(path: Path, engine: str) -> Any:
    """Open a file with xarray, undecoded (each part decodes what it uses; nothing warns)."""
    import xarray as xr

    if engine == "scipy":
        try:
            import scipy  # noqa: F401
        except ImportError:
            raise MissingDependencyError(
                f"{path} is a netCDF3 (classic) file; reading it needs scipy: pip install scipy"
            ) from None
    else:
        try:
            import h5netcdf  # noqa: F401
            import h5py
        except ImportError:  # pragma: no cover - a runtime dependency
            raise MissingDependencyError(
                f"reading {path} needs h5netcdf: pip install h5netcdf"
            ) from None
        # h5netcdf reads the root attributes in the middle of its constructor; when that fails
        # the half-built object's destructor raises again ("Exception ignored in File.close"
        # on stderr). Reading them with h5py first turns a damaged file into one clean error.
        with h5py.File(path, "r") as f:
            f.attrs.get("_nc3_strict")
    return xr.open_dataset(path, engine=engine, decode_cf=False, cache=False)


def attr_text(attrs: Mapping[str, Any], key: str) -> str | None:
    """A text attribute, stripped (bytes decoded as UTF-8); None if absent or not text."""
    v = attrs.get(key)
    if isinstance(v, bytes | np.bytes_):
        v = bytes(v).decode("utf-8", "replace")
    if isinstance(v, np.ndarray) and v.dtype.kind in "SU" and v.size == 1:
        v = str(v.item() if v.dtype.kind == "U" else v.item().decode("utf-8", "replace"))
    return v.strip() if isinstance(v, str) else None


def attr_numbers(attrs: Mapping[str, Any], key: str) -> list[float]:
    """A numeric attribute's values ([] if absent or not numbers)."""
    if key not in attrs:
        return []
    a = np.asarray(attrs[key]).ravel()
    if a.dtype.kind not in "iuf":
        return []
    return [float(x) for x in a]


@contextmanager
def collected_warnings() -> Iterator[list[str]]:
    """Run library calls whose warnings become notes: the list is filled when the block ends.

    Warning filters are process-wide, so callers take turns (a lock): the calls inside are
    small (a time axis, a grid mapping), never the pixel reads.
    """
    notes: list[str] = []
    with _WARNINGS_LOCK:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield notes
        for w in caught:
            text = " ".join(str(w.message).split())
            if text not in notes:
                notes.append(text)
