"""The reader contract shared by every radar source.

A reader turns raw files into `Frame` objects in two steps, so that ingest can check a whole
archive before writing anything and decode in parallel:

1. ``scan(path, workdir)`` reads only what it needs to date and describe each frame a file holds
   (a header, a file name) and returns one `Scanned` per frame or one `Failure` per bad file.
   Archives (tar) are unpacked into ``workdir``; each member becomes its own `Item`.
2. ``read(item)`` decodes one frame fully.

A `Frame` is *quantized*: ``codes`` holds the integer codes of the file (north-up, row 0 is the
northern edge) and ``table`` maps each code to its physical value, either a rain rate in mm/h or
a reflectivity in dBZ (``FrameInfo.quantity``). Conversion to the store's pixel encoding is then
one table lookup (see `nowcast_cli.encoding`), exact for sources that already store pixels.
``valid`` is False where the radar had no data. Readers raise `BadFileError` (a `DataError`) for
anything wrong with a file and nothing else; readers must be thread-safe (ingest runs them in
worker threads).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from nowcast_cli.errors import DataError
from nowcast_cli.grid import Grid

Quantity = Literal["rain_rate", "reflectivity"]


class BadFileError(DataError):
    """A file that cannot be decoded; the message names the file and says why."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


@dataclass(frozen=True)
class FrameInfo:
    """What a scan learns about one frame without decoding it.

    Parameters
    ----------
    name : str
        Display name: the file, or ``archive:member``.
    time : int
        Valid time, seconds since 1970-01-01 UTC (end of the interval for accumulations,
        run time plus lead time for forecasts).
    product : str
        Product identifier ("RY", "HKO-7 CAPPI"); a store holds one product.
    grid : Grid
        The raster.
    interval_s : int
        Product interval in seconds.
    quantity : {"rain_rate", "reflectivity"}
        What ``Frame.table`` holds: mm/h or dBZ.
    lead_min : int
        Forecast lead time in minutes (0 for observations).
    """

    name: str
    time: int
    product: str
    grid: Grid
    interval_s: int
    quantity: Quantity
    lead_min: int = 0


@dataclass(frozen=True)
class Item:
    """One frame's bytes: a file, or a member extracted from an archive into a work folder."""

    path: Path
    name: str
    extras: tuple[tuple[str, str], ...] = ()  # reader-specific (key, value) pairs

    def extra(self, key: str, default: str | None = None) -> str | None:
        """Return a reader-specific value stored with the item."""
        return dict(self.extras).get(key, default)


@dataclass(frozen=True)
class Scanned:
    """A frame found by a scan."""

    item: Item
    info: FrameInfo


@dataclass(frozen=True)
class Failure:
    """A file (or member) that could not be used, with the reason."""

    name: str
    reason: str


@dataclass
class Frame:
    """A decoded frame, quantized: physical value = ``table[codes]``.

    Parameters
    ----------
    info : FrameInfo
        Metadata.
    codes : np.ndarray
        (rows, cols) unsigned integer codes, north-up.
    table : np.ndarray
        float64 physical value (mm/h or dBZ, see ``info.quantity``) of each code;
        ``len(table) > codes.max()``.
    valid : np.ndarray
        (rows, cols) bool, False where the radar had no data.
    warnings : list of str
        Non-fatal remarks for the ingest summary (a missing mask file, …).
    """

    info: FrameInfo
    codes: np.ndarray
    table: np.ndarray
    valid: np.ndarray
    warnings: list[str] = field(default_factory=list)

    def values(self) -> np.ndarray:
        """Physical values as float32, NaN where not valid."""
        out = self.table[self.codes].astype(np.float32, copy=False)
        return np.where(self.valid, out, np.float32(np.nan))


class Reader(ABC):
    """A radar source: scans and decodes its files. Subclasses register in `READERS`.

    Class attributes describe the source for the store and for ``nowcast list sources``.
    """

    name: ClassVar[str]
    attribution: ClassVar[str]
    licence: ClassVar[str] = ""
    zr: ClassVar[tuple[float, float]]  # Z = a R^b, (a, b)
    zr_reference: ClassVar[str] = ""
    # SPEC §2 stores P = 0 where ``valid`` is False (no measurement there). A source whose mask
    # marks *excluded* pixels that still hold a measured value (HKO-7's quality masks) sets this
    # False, so the store keeps the file's value and the mask alone says what to ignore.
    zero_invalid: ClassVar[bool] = True

    def candidates(self, paths: list[Path]) -> list[Path]:
        """Files under `paths` this reader should scan (default: every regular, non-hidden file)."""
        return walk_files(paths)

    @abstractmethod
    def scan(self, path: Path, workdir: Path) -> list[Scanned | Failure]:
        """Describe the frames one file holds, without decoding their data."""

    @abstractmethod
    def read(self, item: Item) -> Frame:
        """Decode one frame. Raises `BadFileError` on any problem with the bytes."""

    def read_pixels(
        self, item: Item, zr: tuple[float, float]
    ) -> tuple[FrameInfo, np.ndarray, np.ndarray, list[str]]:
        """Decode one frame straight to store pixels: (info, uint8 pixels, valid, warnings).

        The default goes through `read` and one table lookup; readers may fuse the two for
        speed, and must give the same result (a test checks it).
        """
        from nowcast_cli.encoding import encode_table

        frame = self.read(item)
        lut = encode_table(frame.table, frame.info.quantity, *zr)
        valid = np.ascontiguousarray(frame.valid, dtype=bool)
        pix = lut[frame.codes]
        if self.zero_invalid:
            pix[~valid] = 0
        return frame.info, pix, valid, list(frame.warnings)

    def static_arrays(self) -> dict[str, np.ndarray]:
        """2-D arrays (rows, cols) written once into a new store, e.g. a static exclusion mask."""
        return {}

    def store_attrs(self) -> dict[str, Any]:
        """Source-level attributes recorded in a new store."""
        return {
            "source": self.name,
            "attribution": self.attribution,
            "licence": self.licence,
            "zr": {"a": self.zr[0], "b": self.zr[1], "reference": self.zr_reference},
        }


def walk_files(paths: list[Path]) -> list[Path]:
    """Regular, non-hidden files under `paths` (files are taken as given), sorted per root."""
    out: list[Path] = []
    for root in paths:
        if root.is_file():
            out.append(root)
            continue
        found: list[Path] = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            found.extend(Path(dirpath) / f for f in filenames if not f.startswith("."))
        out.extend(sorted(found))
    return out


def iter_scanned(results: list[Scanned | Failure]) -> Iterator[Scanned]:
    """The `Scanned` entries of a scan result."""
    return (r for r in results if isinstance(r, Scanned))
