"""FMI radar reflectivity composites: 8-bit binary PGM images (plain or gzip) with a text header.

Format (FMI composites as distributed in pysteps-data, decoded as pysteps' ``import_fmi_pgm``):
``P5``, then ``#`` comment lines holding ``key value…`` pairs (``obstime YYYYMMDDHHMM`` in UTC,
``producttype``, ``productname``, ``param``, ``metersperpixel_x``/``_y`` and a ``projection``
block with ``type stereographic``, ``centrallongitude``, ``centrallatitude``, ``truelatitude``,
``bottomleft`` and ``topright`` lon/lat corners), then ``width height``, the maximum value, one
whitespace byte and width·height bytes, row 0 north.

Decisions:

- Calibration: dBZ = 0.5·v - 32 (pysteps' ``(v - 64) / 2``); the maximum value of the header (255)
  marks pixels without data (``valid`` False), as in pysteps. The files do not state the gain
  and offset, so they are FMI's published 8-bit dBZ coding, not read per file.
- Time: the header's ``obstime`` (UTC); the file name's leading ``YYYYMMDDHHMM`` if it has none.
  The product interval is 5 minutes (pysteps' ``accutime``).
- Grid: the stereographic header gives the PROJ string pysteps builds (sphere R = 6 371 288 m,
  false easting/northing 380 886.310 m / 3 395 677.920 m, which the files do not carry) and the
  lower-left corner projected from ``bottomleft``; the cell size is ``metersperpixel_x``.
- A ``param`` that is not a reflectivity, a 16-bit PGM and pixel values above the header's
  maximum are rejected as bad files.
"""

from __future__ import annotations

import calendar
import functools
import math
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nowcast_cli.grid import Grid
from nowcast_cli.io import READERS
from nowcast_cli.io.base import (
    BadFileError,
    Failure,
    Frame,
    FrameInfo,
    Item,
    Reader,
    Scanned,
    walk_files,
)

GAIN, OFFSET = 0.5, -32.0  # dBZ = GAIN * v + OFFSET
INTERVAL_S = 300
HEADER_LIMIT = 65536  # real headers are ~700 bytes
MAX_PIXELS = 8192 * 8192
SPHERE_RADIUS = 6371288.0  # pysteps' FMI projection constants (not in the files)
FALSE_EASTING = 380886.310
FALSE_NORTHING = 3395677.920

_WHITESPACE = b" \t\r\n\v\f"
_DIGITS = re.compile(rb"\d+")
_OBSTIME = re.compile(r"(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})")
_NAME_TIME = re.compile(r"^(\d{12})(?!\d)")


@dataclass(frozen=True)
class PgmHeader:
    """A parsed FMI PGM header.

    Attributes
    ----------
    cols, rows : int
        Image width and height.
    maxval : int
        Maximum value; also the no-data value.
    offset : int
        Byte offset of the pixel data.
    meta : dict
        Comment ``key: [values…]`` pairs (the last occurrence of a key wins).
    """

    cols: int
    rows: int
    maxval: int
    offset: int
    meta: dict[str, list[str]]


def decompress(raw: bytes, name: str, limit: int) -> tuple[bytes, bool]:
    """Undo gzip compression (detected by magic bytes), decoding about `limit` bytes.

    Returns
    -------
    data : bytes
        The decompressed bytes, at least `limit` of them if the stream holds that many (plain
        input passes through whole).
    complete : bool
        False when the gzip stream stops early: before `limit` bytes or before its checksum.
    """
    if raw[:2] != b"\x1f\x8b":
        return raw, True
    d = zlib.decompressobj(wbits=31)
    try:
        out = d.decompress(raw, limit + 1)
        if len(out) <= limit and not d.eof:
            out += d.flush()
    except zlib.error as exc:
        raise BadFileError(name, f"corrupt gzip stream ({exc})") from None
    return out, d.eof or len(out) > limit


def parse_header(data: bytes, name: str) -> PgmHeader:
    """Parse the PGM header at the start of (decompressed) bytes."""
    if not data:
        raise BadFileError(name, "empty file")
    if data[:2] != b"P5" or data[2:3] not in (b"", *(bytes([c]) for c in _WHITESPACE)):
        if data[:2] == b"P2":
            raise BadFileError(name, "ASCII (P2) PGM is not supported; FMI composites are P5")
        raise BadFileError(name, f"not a binary PGM image (starts {data[:8]!r})")
    meta: dict[str, list[str]] = {}
    numbers: list[int] = []
    pos = 2
    end = min(len(data), HEADER_LIMIT)
    while len(numbers) < 3:
        if pos >= end:
            raise BadFileError(name, "PGM header is truncated or too long")
        c = data[pos]
        if c in _WHITESPACE:
            pos += 1
        elif c == ord("#"):
            eol = data.find(b"\n", pos, end)
            if eol < 0:
                raise BadFileError(name, "PGM header is truncated or too long")
            words = data[pos + 1 : eol].decode("latin-1").split()
            if len(words) >= 2:
                meta[words[0]] = words[1:]
            pos = eol + 1
        else:
            m = _DIGITS.match(data, pos)
            if not m or m.end() - m.start() > 9:
                raise BadFileError(name, f"unexpected PGM header byte {data[pos : pos + 1]!r}")
            numbers.append(int(m.group()))
            pos = m.end()
    if pos >= len(data) or data[pos] not in _WHITESPACE:
        raise BadFileError(name, "PGM header is truncated (no whitespace after the maximum value)")
    cols, rows, maxval = numbers
    if not (cols > 0 and rows > 0 and cols * rows <= MAX_PIXELS):
        raise BadFileError(name, f"implausible image size {cols}x{rows}")
    if not 0 < maxval < 256:
        raise BadFileError(name, f"maximum value {maxval}: only 8-bit PGM is supported")
    return PgmHeader(cols, rows, maxval, pos + 1, meta)


def _first(meta: dict[str, list[str]], key: str) -> str | None:
    values = meta.get(key)
    return values[0] if values else None


def _float(meta: dict[str, list[str]], key: str, name: str, n: int = 1) -> list[float]:
    values = meta.get(key, [])
    try:
        out = [float(v) for v in values[:n]]
    except ValueError:
        raise BadFileError(name, f"header {key} is not a number: {values!r}") from None
    if len(out) < n or not all(math.isfinite(v) for v in out):
        raise BadFileError(name, f"header {key} needs {n} finite number(s), has {values!r}")
    return out


def stereographic_xy(lon: float, lat: float, lon_0: float, lat_ts: float) -> tuple[float, float]:
    """Project lon/lat (degrees) on pysteps' FMI north-polar stereographic sphere (metres)."""
    lam = math.radians(lon - lon_0)
    rho = (
        SPHERE_RADIUS
        * (1.0 + math.sin(math.radians(lat_ts)))
        * math.tan(math.pi / 4.0 - math.radians(lat) / 2.0)
    )
    return rho * math.sin(lam) + FALSE_EASTING, -rho * math.cos(lam) + FALSE_NORTHING


def header_grid(h: PgmHeader, name: str) -> Grid:
    """The grid a header describes (georeferenced when its projection is stereographic)."""
    area = " ".join(
        v for v in (_first(h.meta, "composite_area"), _first(h.meta, "projection_name")) if v
    )
    gname = f"FMI {area or 'composite'} {h.rows}x{h.cols}"
    if _first(h.meta, "type") != "stereographic":
        return Grid(gname, h.rows, h.cols)
    lon_0 = _float(h.meta, "centrallongitude", name)[0]
    lat_0 = _float(h.meta, "centrallatitude", name)[0]
    lat_ts = _float(h.meta, "truelatitude", name)[0]
    ll_lon, ll_lat = _float(h.meta, "bottomleft", name, 2)
    cell = _float(h.meta, "metersperpixel_x", name)[0]
    if lat_0 != 90.0 or not (-90.0 < ll_lat < 90.0 and 0.0 < lat_ts <= 90.0) or cell <= 0:
        raise BadFileError(name, "header projection is not a north-polar stereographic grid")
    x_ll, y_ll = stereographic_xy(ll_lon, ll_lat, lon_0, lat_ts)
    proj = (
        f"+proj=stere +lat_0=90 +lon_0={lon_0:g} +lat_ts={lat_ts:g} +a={SPHERE_RADIUS:.0f} "
        f"+b={SPHERE_RADIUS:.0f} +x_0={FALSE_EASTING:.3f} +y_0={FALSE_NORTHING:.3f} "
        "+units=m +no_defs"
    )
    return Grid(gname, h.rows, h.cols, cell, proj, x_ll, y_ll)


def header_time(h: PgmHeader, name: str) -> int:
    """Observation time (UTC seconds) from ``obstime``, else from the file name."""
    stamp = _first(h.meta, "obstime")
    if stamp is None:
        m = _NAME_TIME.match(Path(name.rsplit(":", 1)[-1]).name)
        if not m:
            raise BadFileError(name, "header has no obstime and the file name no YYYYMMDDHHMM")
        stamp = m.group(1)
    m = _OBSTIME.fullmatch(stamp)
    if not m:
        raise BadFileError(name, f"header obstime {stamp!r} is not YYYYMMDDHHMM")
    year, month, day, hour, minute = (int(g) for g in m.groups())
    if not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]):
        raise BadFileError(name, f"header obstime {stamp!r} is not a valid date")
    if hour > 23 or minute > 59:
        raise BadFileError(name, f"header obstime {stamp!r} is not a valid time")
    return calendar.timegm((year, month, day, hour, minute, 0))


def header_info(h: PgmHeader, name: str) -> FrameInfo:
    """Frame metadata from a parsed header."""
    param = _first(h.meta, "param")
    if param is not None and not re.search("reflectivity|dbz", param, re.IGNORECASE):
        raise BadFileError(name, f"unsupported parameter {param!r}: only reflectivity (dBZ)")
    parts = [_first(h.meta, k) for k in ("composite_area", "productname", "param")]
    product = " ".join(["FMI", *(p for p in parts if p)])
    return FrameInfo(
        name=name,
        time=header_time(h, name),
        product=product,
        grid=header_grid(h, name),
        interval_s=INTERVAL_S,
        quantity="reflectivity",
    )


def _looks_pgm(path: Path) -> bool:
    name = path.name.lower()
    if name.endswith((".pgm", ".pgm.gz")):
        return True
    try:
        with path.open("rb") as f:
            return f.read(2) == b"P5"
    except OSError:
        return True  # let the scan report why it cannot be read


@functools.lru_cache(maxsize=1)
def dbz_table() -> np.ndarray:
    """Return the dBZ of each 8-bit code: 0.5·v - 32."""
    table = GAIN * np.arange(256, dtype=np.float64) + OFFSET
    table.flags.writeable = False
    return table


def decode(data: bytes, name: str, complete: bool = True) -> Frame:
    """Decode (decompressed) FMI PGM bytes to a quantized frame.

    Parameters
    ----------
    data : bytes
        The file content after decompression.
    name : str
        Name for messages.
    complete : bool
        False if a gzip stream ended before its checksum.
    """
    h = parse_header(data, name)
    info = header_info(h, name)
    n = h.rows * h.cols
    payload = data[h.offset : h.offset + n]
    if len(payload) < n or not complete:
        raise BadFileError(name, f"truncated: {len(payload)} of {n} pixel bytes")
    raw = np.frombuffer(payload, dtype=np.uint8).reshape(h.rows, h.cols)
    if h.maxval < 255 and int(raw.max()) > h.maxval:
        raise BadFileError(name, f"pixel values above the header's maximum {h.maxval}")
    valid = raw != h.maxval
    codes = np.where(valid, raw, np.uint8(0))
    return Frame(info, codes, dbz_table(), valid)


@READERS.register("fmi")
class FmiReader(Reader):
    """FMI radar reflectivity composites: 8-bit PGM images with a text header (plain or gzip)."""

    name = "fmi"
    attribution = "Source: Finnish Meteorological Institute (FMI)"
    licence = (
        "FMI open data, CC BY 4.0 (files from pySTEPS/pysteps-data, which states no licence; "
        "check before redistributing)"
    )
    zr = (223.0, 1.53)
    zr_reference = (
        "FMI's operational Z = 223 R^1.53, as reported by pysteps 1.21.5 import_fmi_pgm "
        "(metadata zr_a = 223.0, zr_b = 1.53)"
    )

    def candidates(self, paths: list[Path]) -> list[Path]:
        """PGM files under `paths`: by suffix or ``P5`` signature (files named explicitly: all)."""
        return [p for p in walk_files(paths) if p in paths or _looks_pgm(p)]

    def scan(self, path: Path, workdir: Path) -> list[Scanned | Failure]:
        """Read the header of one composite."""
        try:
            raw = path.read_bytes()
        except OSError as exc:
            return [Failure(str(path), f"cannot read ({exc.strerror or exc})")]
        try:
            head, _ = decompress(raw, path.name, HEADER_LIMIT)
            info = header_info(parse_header(head, path.name), path.name)
        except BadFileError as exc:
            return [Failure(str(path), exc.reason)]
        return [Scanned(Item(path, path.name), info)]

    def read(self, item: Item) -> Frame:
        """Decode one composite to a quantized, north-up frame of dBZ codes."""
        try:
            raw = item.path.read_bytes()
        except OSError as exc:
            raise BadFileError(item.name, f"cannot read ({exc.strerror or exc})") from None
        head, _ = decompress(raw, item.name, HEADER_LIMIT)
        h = parse_header(head, item.name)
        data, complete = decompress(raw, item.name, h.offset + h.rows * h.cols)
        return decode(data, item.name, complete)

    def store_attrs(self) -> dict[str, Any]:
        """Source attributes plus the pixel calibration."""
        return {
            **super().store_attrs(),
            "calibration": "dBZ = 0.5 * v - 32; v = 255 (the PGM maximum) is no data",
        }
