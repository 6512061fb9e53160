"""DWD RADOLAN/RADVOR binary composites (RY, RW, YW, RZ, SF, EY, EZ, RX, EX, WX, RV, RQ, …).

Format (DWD "RADOLAN/RADVOR-OP Kompositformat", cross-checked against wradlib and real files):
an ASCII header ended by one ETX byte (0x03), then rows×cols little-endian 16-bit words
(12-bit value × PR; bit 13 secondary, bit 14 no data, bit 15 negative, bit 16 clutter) or
single bytes (RVP6 code: dBZ = v/2 − 32.5; 249 clutter, 250 no data). The first stored row is the
southern edge; frames are flipped to north-up here. Files may be plain, gzip or bzip2 (detected
by magic bytes, not by name), or members of tar archives; bytes after the payload are ignored.

DWD's ASCII variant (ESRI-grid header ``ncols … NODATA_value``, rows north to south, integer
values in 0.1 mm when NODATA_value is −1, product and time only in the file name
``RW_20221018-0050.asc``) is read too, and so are DWD's ODIM-HDF5 composites
(``raa01-rw_10000-latest-dwd---bin.hdf5``: ``dataset1/data1`` with gain, offset, nodata and
undetect; product from ``dataset1/what/prodname``, interval from its start and end times; rows
north to south; ACRR depths, RATE rates or DBZH reflectivities).

Decisions (see the module-level tables below):

- Precipitation depths (mm per INT minutes) become rain rates: R = value·PR·60/INT (mm/h).
- No-data flag (2-byte) and RVP6 codes ≥ 249 (clutter, no data, reserved) → ``valid`` False.
- The 2-byte clutter and secondary flags are informational: DWD still provides its corrected
  value there, so those pixels stay valid with their value (YW2017.002 flags ~4k px per frame).
- RADVOR forecasts (RV, RQ, header ``VV``) are dated at run time + lead time.
- Products that are not precipitation or reflectivity (%M/%J/%Y relative sums, RE solid
  fraction), run-length picture products (PG, PC, PZ), and products whose value scale is not
  documented (FZ) or whose flag bits are used in an undocumented way (W3/W4: the sign bit is set
  on ~20% of their pixels, where a negative sum is impossible) are rejected as unsupported.
"""

from __future__ import annotations

import bz2
import calendar
import dataclasses
import datetime as dt
import functools
import hashlib
import io
import re
import tarfile
import threading
import zlib
from pathlib import Path
from types import ModuleType

import numpy as np

from nowcast_cli.grid import Grid
from nowcast_cli.io import READERS
from nowcast_cli.io.base import (
    BadFileError,
    Failure,
    Frame,
    FrameInfo,
    Item,
    Quantity,
    Reader,
    Scanned,
)

_inflate: ModuleType
try:  # zlib-ng inflates RADOLAN's gzip files 10-20x faster than the stdlib (same API)
    from zlib_ng import zlib_ng as _inflate
except ImportError:  # pragma: no cover - the stdlib does the same, slower
    _inflate = zlib
_DECOMPRESS_ERRORS: tuple[type[BaseException], ...] = (
    zlib.error,
    _inflate.error,
    OSError,
    ValueError,
    EOFError,
)

HEADER_LIMIT = 8192  # no real header is longer than ~300 bytes; stop looking after this
DEPTH_PRODUCTS = frozenset(
    # depth per interval (mm), 2-byte values
    [
        "RY",
        "RZ",
        "RH",
        "RB",
        "RW",
        "RL",
        "RU",
        "EY",
        "EZ",
        "EH",
        "EB",
        "EW",
        "YW",
        "RV",
        "RQ",
        "SQ",
        "SH",
        "SF",
        "W1",
        "W2",
    ]
)
RVP6_PRODUCTS = frozenset({"RX", "EX", "WX"})
UNSUPPORTED = {
    "PG": "run-length coded picture product (classes, not values)",
    "PC": "run-length coded picture product (classes, not values)",
    "PZ": "run-length coded picture product (classes, not values)",
    "%M": "precipitation relative to the 30-year mean (percent), not a rain rate",
    "%J": "precipitation relative to the 30-year mean (percent), not a rain rate",
    "%Y": "precipitation relative to the 30-year mean (percent), not a rain rate",
    "RE": "solid fraction of precipitation, not a rain rate",
    "FZ": "RADVOR reflectivity nowcast whose value scale DWD's format notes do not document",
    # bit 15 (the sign bit) is set on ~20% of W3/W4 pixels, where a negative sum is impossible;
    # DWD does not document what it means there (wradlib ignores it), so no reading is safe
    "W3": "3-week sum whose sign bit is set on ~20% of pixels, a meaning DWD does not document",
    "W4": "4-week sum whose sign bit is set on ~20% of pixels, a meaning DWD does not document",
}

# Polar stereographic projection of the RADOLAN grids (DWD "Radarkomposits - Projektionen und
# Gitter"): sphere of radius 6370.04 km for format versions < 5, WGS84 for RADVOR/DE1200 (VS ≥ 5).
PROJ_SPHERE = "+proj=stere +lat_0=90 +lat_ts=60 +lon_0=10 +a=6370040 +b=6370040 +units=m +no_defs"
PROJ_WGS84 = "+proj=stere +lat_0=90 +lat_ts=60 +lon_0=10 +ellps=WGS84 +units=m +no_defs"
# (rows, cols) -> (name, cell size m, lower-left corner x, y in m) of the sphere variant
_GRIDS_SPHERE = {
    (900, 900): ("RADOLAN national 900x900", 1000.0, -523462.167, -4658644.724),
    (1100, 900): ("RADOLAN extended national 1100x900", 1000.0, -443462.167, -4758644.724),
    (1200, 1100): ("RADOLAN DE1200 1200x1100", 1000.0, -543462.167, -4808644.724),
    (1500, 1400): ("RADOLAN central European 1500x1400", 1000.0, -673462.167, -5008644.724),
    (450, 450): ("RADOLAN national 450x450 (2 km)", 2000.0, -523462.167, -4658644.724),
}
# The WGS84 variant has other false easting/northing (wradlib's table from the same DWD document).
_GRIDS_WGS84 = {
    (900, 900): ("RADOLAN national 900x900", 1000.0, -523696.835, -4672088.862),
    (1200, 1100): ("RADOLAN DE1200 1200x1100", 1000.0, -543696.835, -4822088.862),
}

# ASCII variant: the interval is not in the file, so it comes from the product id
ASCII_INTERVAL_MIN = {
    **dict.fromkeys(["RW", "RH", "RB", "RL", "RU", "EH", "EB", "EW", "RQ"], 60),
    **dict.fromkeys(["RY", "RZ", "YW", "EY", "EZ", "RV"], 5),
    "SQ": 360,
    "SH": 720,
    "SF": 1440,
}
_ASCII_NAME = re.compile(r"([A-Z]{2})_(\d{8})-(\d{4})\.asc")
_ASCII_KEYS = ("ncols", "nrows", "xllcorner", "yllcorner", "cellsize", "NODATA_value")

_TOKEN = re.compile(r"(INT|BY|VS|SW|PR|GP|VV|MF|QN|VR|LV|CS|MX|BG|U(?=\d)|MS|ST|RM)")
_LENGTH_TOKENS = {"MS", "ST", "RM"}
_HEAD = re.compile(r"([A-Z%][A-Z0-9%])(\d{6})(\d{5})(\d{4})")
_NAME_RE = re.compile(r"[^A-Za-z0-9._-]+")


def _bad(name: str, reason: str) -> BadFileError:
    return BadFileError(name, reason)


def decompress(raw: bytes, name: str, limit: int | None = None) -> bytes:
    """Undo gzip or bzip2 compression (detected by magic bytes); plain bytes pass through.

    Parameters
    ----------
    raw : bytes
        File content.
    name : str
        File name for error messages.
    limit : int, optional
        Decompress at most this many bytes (enough for a header).
    """
    try:
        if raw[:2] == b"\x1f\x8b":
            d = _inflate.decompressobj(wbits=31)
            out: bytes = d.decompress(raw, limit) if limit else d.decompress(raw) + d.flush()
            return out
        if raw[:3] == b"BZh":
            b = bz2.BZ2Decompressor()
            return b.decompress(raw, limit if limit else -1)
    except _DECOMPRESS_ERRORS as exc:
        kind = "gzip" if raw[:2] == b"\x1f\x8b" else "bzip2"
        raise _bad(name, f"corrupt {kind} stream ({exc})") from None
    return raw


def _is_tar(head: bytes) -> bool:
    return len(head) >= 262 and head[257:262] == b"ustar"


class Header:
    """A parsed RADOLAN header.

    Attributes
    ----------
    product : str
        Two-letter product id ("RY").
    time : int
        Header date, seconds since the epoch UTC.
    tokens : dict
        Raw token values (stripped strings).
    size : int
        Header length in bytes, not counting the ETX byte.
    """

    def __init__(self, product: str, time: int, tokens: dict[str, str], size: int) -> None:
        self.product = product
        self.time = time
        self.tokens = tokens
        self.size = size

    def int_token(self, key: str, name: str, default: int | None = None) -> int:
        """Integer value of a token; a missing or malformed token is a `BadFileError`."""
        if key not in self.tokens:
            if default is not None:
                return default
            raise _bad(name, f"header has no {key} token")
        try:
            return int(self.tokens[key])
        except ValueError:
            raise _bad(
                name, f"header token {key} is not an integer: {self.tokens[key]!r}"
            ) from None

    @property
    def lead_min(self) -> int:
        """Forecast lead time (VV) in minutes, 0 for observations."""
        return int(self.tokens.get("VV", "0") or 0)


def parse_header(data: bytes, name: str) -> Header:
    """Parse the ASCII header at the start of decompressed RADOLAN bytes."""
    end = data.find(b"\x03", 0, HEADER_LIMIT)
    if end < 0:
        if not data:
            raise _bad(name, "empty file")
        raise _bad(name, "not a RADOLAN composite (no end-of-header byte 0x03)")
    text = data[:end].decode("latin-1")
    m = _HEAD.match(text)
    if not m:
        raise _bad(name, f"not a RADOLAN composite (header starts {text[:17]!r})")
    product, ddhhmm, _site, mmyy = m.groups()
    if product in UNSUPPORTED:  # checked first: their headers carry other tokens
        raise _bad(name, f"unsupported product {product}: {UNSUPPORTED[product]}")
    day, hour, minute = int(ddhhmm[:2]), int(ddhhmm[2:4]), int(ddhhmm[4:])
    month, yy = int(mmyy[:2]), int(mmyy[2:])
    year = 2000 + yy if yy < 70 else 1900 + yy
    if not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]):
        raise _bad(name, f"header date is invalid ({ddhhmm} {mmyy})")
    if hour > 23 or minute > 59:
        raise _bad(name, f"header time is invalid ({ddhhmm})")
    time = calendar.timegm((year, month, day, hour, minute, 0))
    tokens: dict[str, str] = {}
    pos = m.end()
    while pos < len(text):
        while pos < len(text) and text[pos] == " ":
            pos += 1
        if pos >= len(text):
            break
        t = _TOKEN.match(text, pos)
        if not t:
            raise _bad(name, f"unexpected header text {text[pos : pos + 12]!r} at byte {pos}")
        key = t.group(1)
        pos = t.end()
        if key in _LENGTH_TOKENS:
            close = text.find(">", pos)
            if text[pos + 3 : pos + 4] == "<" and close >= 0:
                value, pos = text[pos + 3 : close + 1], close + 1
            else:
                try:
                    n = int(text[pos : pos + 3])
                except ValueError:
                    raise _bad(name, f"header token {key} has no length") from None
                value, pos = text[pos + 3 : pos + 3 + n], pos + 3 + n
        else:
            nxt = _TOKEN.search(text, pos)
            stop = nxt.start() if nxt else len(text)
            value, pos = text[pos:stop], stop
        tokens[key] = value.strip()
    return Header(product, time, tokens, end)


@functools.lru_cache(maxsize=64)
def _depth_table(precision: float, interval_min: int) -> np.ndarray:
    """Rain rate (mm/h) of each 13-bit code: 12-bit value, bit 12 = negative."""
    values = np.arange(8192, dtype=np.float64)
    magnitude = (values.astype(np.int64) & 0x0FFF) * precision * 60.0 / interval_min
    sign = np.where(values.astype(np.int64) & 0x1000, -1.0, 1.0)
    table = magnitude * sign
    table.flags.writeable = False
    return table


@functools.lru_cache(maxsize=1)
def _rvp6_table() -> np.ndarray:
    table = np.arange(256, dtype=np.float64) / 2.0 - 32.5
    table.flags.writeable = False
    return table


class RadolanDecode:
    """Header fields that decide how to decode the payload (shared by scan and read)."""

    def __init__(self, header: Header, name: str) -> None:
        product = header.product
        if product not in DEPTH_PRODUCTS and product not in RVP6_PRODUCTS:
            supported = ", ".join(sorted(DEPTH_PRODUCTS | RVP6_PRODUCTS))
            raise _bad(name, f"unsupported product {product!r} (supported: {supported})")
        gp = header.tokens.get("GP", "")
        gm = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)", gp)
        if not gm:
            raise _bad(name, f"header has no valid grid size (GP {gp!r})")
        self.rows, self.cols = int(gm.group(1)), int(gm.group(2))
        if not (0 < self.rows <= 10000 and 0 < self.cols <= 10000):
            raise _bad(name, f"implausible grid size {self.rows}x{self.cols}")
        self.product = product
        self.single_byte = product in RVP6_PRODUCTS
        interval = header.int_token("INT", name)
        if header.tokens.get("U", "0") == "1":
            interval *= 1440  # U1: INT counts days
        if interval <= 0:
            raise _bad(name, f"header interval INT is {interval}")
        self.interval_min = interval
        pr = header.tokens.get("PR", "E+00" if self.single_byte else "")
        pm = re.fullmatch(r"E([+-]\d\d)", pr.replace(" ", ""))
        if not pm:
            raise _bad(name, f"header has no valid precision (PR {pr!r})")
        self.precision = 10.0 ** int(pm.group(1))
        self.nbytes = self.rows * self.cols * (1 if self.single_byte else 2)
        if "BY" in header.tokens:
            declared = header.int_token("BY", name) - header.size - 1
            if declared < self.nbytes:
                raise _bad(
                    name,
                    f"header declares {declared} payload bytes but {self.rows}x{self.cols} "
                    f"{'1' if self.single_byte else '2'}-byte values need {self.nbytes}",
                )
        self.lead_min = header.lead_min
        vs = header.int_token("VS", name, default=0)
        self.grid = _grid(self.rows, self.cols, vs)
        self.time = header.time + 60 * self.lead_min
        self.header = header


def _grid(rows: int, cols: int, vs: int) -> Grid:
    table, proj = (_GRIDS_WGS84, PROJ_WGS84) if vs >= 5 else (_GRIDS_SPHERE, PROJ_SPHERE)
    if (rows, cols) in table:
        gname, cell, x_ll, y_ll = table[(rows, cols)]
        return Grid(gname, rows, cols, cell, proj, x_ll, y_ll)
    return Grid(f"RADOLAN {rows}x{cols}", rows, cols, 0.0, proj)


@READERS.register("dwd")
class DwdReader(Reader):
    """DWD RADOLAN/RADVOR binary composites: RY, YW, RW, RZ, RX, RV, RQ, … (plain, gz, bz2, tar)."""

    name = "dwd"
    attribution = "Source: Deutscher Wetterdienst (DWD)"
    licence = "DWD open data, CC BY 4.0 (GeoNutzV)"
    zr = (256.0, 1.42)
    zr_reference = "DWD RADOLAN standard Z-R relation Z = 256 R^1.42 (SPEC §3)"

    def __init__(self) -> None:
        # what a file in DWD's own naming had in its header, per (product, compression): the
        # files named like it are planned from their names (`scan`), checked at read
        self._named: dict[tuple[str, str], FrameInfo] = {}
        self._lock = threading.Lock()

    def scan(self, path: Path, workdir: Path) -> list[Scanned | Failure]:
        """Read the header of a file, or of every member of a tar archive.

        A compressed file in DWD's own naming (``raa01-ry_10000-2001011500-dwd---bin.bz2``)
        whose product and compression an earlier file of the run already showed is planned
        from its name (time) and that file's header (grid, interval) without decompressing
        its header: a bzip2 header costs about 40% of decoding the whole file. Its own header
        is checked against the name when the frame is read (ingest fails the file if they
        differ), so nothing stored depends on the name.
        """
        name = str(path)
        named = _DWD_NAME.fullmatch(path.name)
        key = (named.group(1).upper(), named.group(3)) if named else None
        if named and key is not None and key in self._named:
            t = _name_time(named.group(2))
            info = dataclasses.replace(self._named[key], name=name, time=t)
            return [Scanned(Item(path, name), info)]
        try:
            raw = path.read_bytes()
        except OSError as exc:
            return [Failure(name, f"cannot read ({exc.strerror or exc})")]
        try:
            head = decompress(raw, name, limit=HEADER_LIMIT)
            if _is_tar(head):
                return self._scan_tar(path, workdir)
            scanned = self._scan_bytes(Item(path, name), head)
        except BadFileError as exc:
            return [Failure(name, exc.reason)]
        info = scanned.info
        if (
            named
            and key is not None
            and info.lead_min == 0
            and (info.product, info.time) == (key[0], _name_time(named.group(2)))
        ):
            with self._lock:
                self._named.setdefault(key, info)
        return [scanned]

    def _scan_bytes(self, item: Item, head: bytes) -> Scanned:
        if head[:5] == b"ncols":
            return Scanned(item, AsciiGrid(head, item.name).info)
        if head[:8] == HDF5_MAGIC:
            return Scanned(item, OdimComposite(self._bytes(item), item.name).info)
        d = RadolanDecode(parse_header(head, item.name), item.name)
        return Scanned(item, _info(item.name, d))

    def _scan_tar(self, path: Path, workdir: Path) -> list[Scanned | Failure]:
        """Extract each regular member of a (compressed) tar archive and scan it."""
        out: list[Scanned | Failure] = []
        digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
        target = workdir / f"{_NAME_RE.sub('_', path.name)}-{digest}"
        target.mkdir(parents=True, exist_ok=True)
        try:
            with tarfile.open(path, mode="r|*") as tar:
                for i, member in enumerate(tar):
                    if not member.isfile():
                        continue
                    mname = f"{path}:{member.name}"
                    fobj = tar.extractfile(member)
                    if fobj is None:
                        continue
                    data = fobj.read()
                    dest = target / f"{i:06d}_{_NAME_RE.sub('_', Path(member.name).name)}"
                    dest.write_bytes(data)
                    try:
                        head = decompress(data, mname, limit=HEADER_LIMIT)
                        out.append(self._scan_bytes(Item(dest, mname), head))
                    except BadFileError as exc:
                        out.append(Failure(mname, exc.reason))
        except (tarfile.TarError, EOFError, OSError, zlib.error, ValueError) as exc:
            out.append(Failure(str(path), f"corrupt tar archive ({exc})"))
        return out

    def read(self, item: Item) -> Frame:
        """Decode one composite to a quantized, north-up frame."""
        return decode(self._bytes(item), item.name)

    def read_pixels(
        self, item: Item, zr: tuple[float, float]
    ) -> tuple[FrameInfo, np.ndarray, np.ndarray, list[str]]:
        """Decode straight to store pixels with a fused numba kernel (same result as `read`)."""
        data = self._bytes(item)
        if data[:5] == b"ncols" or data[:8] == HDF5_MAGIC:
            return super().read_pixels(item, zr)
        header = parse_header(data, item.name)
        d = RadolanDecode(header, item.name)
        payload = _payload(data, header, d, item.name)
        from nowcast_cli.io._radolan_kernels import payload_to_pixels

        lut = _pixel_lut(d.single_byte, d.precision, d.interval_min, (float(zr[0]), float(zr[1])))
        pix, valid = payload_to_pixels(payload, d.rows, d.cols, d.single_byte, lut)
        return _info(item.name, d), pix, valid, []

    def _bytes(self, item: Item) -> bytes:
        try:
            raw = item.path.read_bytes()
        except OSError as exc:
            raise _bad(item.name, f"cannot read ({exc.strerror or exc})") from None
        return decompress(raw, item.name)


@functools.lru_cache(maxsize=64)
def _pixel_lut(
    single_byte: bool, precision: float, interval_min: int, zr: tuple[float, float]
) -> np.ndarray:
    """Store pixel of each code of a product (the tables of `decode`, encoded once)."""
    from nowcast_cli.encoding import encode_table

    if single_byte:
        return encode_table(_rvp6_table(), "reflectivity", *zr)
    return encode_table(_depth_table(precision, interval_min), "rain_rate", *zr)


def _payload(data: bytes, header: Header, d: RadolanDecode, name: str) -> memoryview:
    start = header.size + 1
    payload = memoryview(data)[start : start + d.nbytes]
    if len(payload) < d.nbytes:
        raise _bad(name, f"truncated: {len(payload)} of {d.nbytes} payload bytes")
    return payload


#: DWD's own file names: product, YYMMDDHHMM (UTC, the header's time), compression
_DWD_NAME = re.compile(r"raa01-([a-z]{2})_10000-(\d{10})-dwd---bin(\.gz|\.bz2)")


def _name_time(stamp: str) -> int:
    """Seconds UTC of a YYMMDDHHMM stamp of a DWD file name (years 2000–2099)."""
    d = dt.datetime.strptime(stamp, "%y%m%d%H%M").replace(tzinfo=dt.UTC)
    return int(d.timestamp())


def _info(name: str, d: RadolanDecode) -> FrameInfo:
    quantity: Quantity = "reflectivity" if d.single_byte else "rain_rate"
    return FrameInfo(name, d.time, d.product, d.grid, 60 * d.interval_min, quantity, d.lead_min)


HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ODIM_QUANTITIES: dict[str, Quantity] = {
    "ACRR": "rain_rate",  # depth (mm) over the product interval
    "RATE": "rain_rate",  # mm/h
    "DBZH": "reflectivity",
    "TH": "reflectivity",
}


class OdimComposite:
    """A DWD composite in ODIM-HDF5 (first dataset, first data), read with h5py."""

    def __init__(self, data: bytes, name: str) -> None:
        try:
            import h5py
        except ImportError:  # pragma: no cover - h5py is a dependency
            raise _bad(name, "ODIM-HDF5 needs h5py: pip install h5py") from None
        self.name = name
        try:
            with h5py.File(io.BytesIO(data), "r") as f:
                what = f["dataset1/what"].attrs
                dwhat = f["dataset1/data1/what"].attrs
                where = f["where"].attrs
                quantity = _text(dwhat["quantity"])
                product = _text(what.get("prodname", b"")) or _text(f["what"].attrs["object"])
                start = _odim_time(what["startdate"], what["starttime"])
                end = _odim_time(what["enddate"], what["endtime"])
                self.gain = float(dwhat.get("gain", 1.0))
                self.offset = float(dwhat.get("offset", 0.0))
                self.nodata = float(dwhat["nodata"])
                self.undetect = float(dwhat.get("undetect", self.nodata))
                rows, cols = (int(n) for n in f["dataset1/data1/data"].shape)
                cell = float(where.get("xscale", 0.0))
                projdef = _text(where.get("projdef", b""))
                self.dtype = f["dataset1/data1/data"].dtype  # the array is read by decode()
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise _bad(name, f"not a readable ODIM-HDF5 composite ({exc})") from None
        if quantity not in _ODIM_QUANTITIES:
            raise _bad(name, f"unsupported ODIM quantity {quantity!r}")
        if self.dtype.kind not in "ui" or self.dtype.itemsize > 2:
            raise _bad(name, f"unsupported ODIM data type {self.dtype}")
        interval_min = (end - start) // 60
        if quantity == "ACRR" and interval_min <= 0:
            raise _bad(name, f"accumulation interval {end - start} s is not positive")
        self.quantity = quantity
        self.interval_min = max(interval_min, 1)
        # ODIM rows run north to south; DWD's grids put the upper-left cell centre at the false
        # origin (x_0, y_0 in projdef). Stored without the false origin, like the binary grids.
        x0, y0 = (_proj_param(projdef, k) for k in ("x_0", "y_0"))
        plain_proj = re.sub(r"\s*\+[xy]_0=\S+", "", projdef).strip()
        grid = Grid(
            _GRIDS_WGS84.get((rows, cols), (f"RADOLAN {rows}x{cols}",))[0],
            rows,
            cols,
            cell,
            plain_proj,
            -x0 - cell / 2 if cell else None,
            -y0 - (rows - 0.5) * cell if cell else None,
        )
        self.info = FrameInfo(
            name, end, product, grid, 60 * self.interval_min, _ODIM_QUANTITIES[quantity]
        )
        self.data = data

    def decode(self) -> Frame:
        """Read the data array into a quantized frame."""
        import h5py

        try:
            with h5py.File(io.BytesIO(self.data), "r") as f:
                raw = np.asarray(f["dataset1/data1/data"][()])
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise _bad(self.name, f"not a readable ODIM-HDF5 composite ({exc})") from None
        if raw.shape != self.info.grid.shape:
            raise _bad(self.name, f"data shape {raw.shape} differs from {self.info.grid.shape}")
        codes = raw.astype(np.int64)
        valid = codes != self.nodata
        if np.any(codes < 0):
            raise _bad(self.name, "negative ODIM codes are not supported")
        codes = np.where(valid, codes, 0)
        top = int(codes.max(initial=0))
        table = np.arange(top + 1, dtype=np.float64) * self.gain + self.offset
        if self.undetect != self.nodata and 0 <= self.undetect <= top:
            table[int(self.undetect)] = 0.0 if self.quantity in ("ACRR", "RATE") else -32.5
        if self.quantity == "ACRR":
            table = table * 60.0 / self.interval_min
        return Frame(self.info, codes.astype(np.uint16), table, valid)


def _text(value: object) -> str:
    if isinstance(value, np.ndarray):
        value = value.flat[0] if value.size else b""
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).decode("latin-1").strip()
    return str(value).strip()


def _proj_param(projdef: str, key: str) -> float:
    m = re.search(rf"\+{key}=(\S+)", projdef)
    try:
        return float(m.group(1)) if m else 0.0
    except ValueError:
        return 0.0


def _odim_time(date: object, clock: object) -> int:
    d, t = _text(date), _text(clock)
    if not (re.fullmatch(r"\d{8}", d) and re.fullmatch(r"\d{6}", t)):
        raise ValueError(f"ODIM date/time {d!r} {t!r}")
    y, mo, dd, h, mi = time_struct(d + t[:4])[:5]
    return calendar.timegm((y, mo, dd, h, mi, int(t[4:])))


class AsciiGrid:
    """DWD's ASCII grid variant: header lines, then rows north → south; product/time from name."""

    def __init__(self, data: bytes, name: str) -> None:
        base = re.split(r"[:/]", name)[-1]
        m = _ASCII_NAME.fullmatch(base)
        if not m:
            raise _bad(name, "ASCII grid whose file name is not PRODUCT_YYYYMMDD-HHMM.asc")
        product, ymd, hhmm = m.groups()
        if product not in ASCII_INTERVAL_MIN:
            raise _bad(name, f"unsupported product {product!r} in an ASCII grid")
        lines = data[:1024].split(b"\n", len(_ASCII_KEYS))
        header: dict[str, float] = {}
        for key, line in zip(_ASCII_KEYS, lines, strict=False):
            parts = line.split()
            if len(parts) != 2 or parts[0].decode("latin-1").lower() != key.lower():
                raise _bad(name, f"ASCII grid header lacks {key}")
            try:
                header[key] = float(parts[1])
            except ValueError:
                raise _bad(name, f"ASCII grid header {key} is not a number") from None
        if len(lines) <= len(_ASCII_KEYS):
            raise _bad(name, "ASCII grid has no data rows")
        rows, cols = int(header["nrows"]), int(header["ncols"])
        if not (0 < rows <= 10000 and 0 < cols <= 10000):
            raise _bad(name, f"implausible grid size {rows}x{cols}")
        try:
            t = calendar.timegm(time_struct(ymd + hhmm))
        except ValueError:
            raise _bad(name, f"invalid date in file name {base!r}") from None
        self.nodata = header["NODATA_value"]
        self.precision = 0.1 if self.nodata == -1 else 1.0  # as wradlib reads it
        self.interval_min = ASCII_INTERVAL_MIN[product]
        cell = header["cellsize"]
        gname = _GRIDS_SPHERE.get((rows, cols), (f"RADOLAN {rows}x{cols}",))[0]
        grid = Grid(gname, rows, cols, cell, PROJ_SPHERE, header["xllcorner"], header["yllcorner"])
        self.info = FrameInfo(name, t, product, grid, 60 * self.interval_min, "rain_rate")
        self.offset = sum(len(line) + 1 for line in lines[: len(_ASCII_KEYS)])

    def decode(self, data: bytes) -> Frame:
        """Parse the values (rows north → south)."""
        name, (rows, cols) = self.info.name, self.info.grid.shape
        try:
            values = np.array(data[self.offset :].split(), dtype=np.float64)
        except ValueError:
            raise _bad(name, "ASCII grid holds a value that is not a number") from None
        if values.size < rows * cols:
            raise _bad(name, f"truncated: {values.size} of {rows * cols} values")
        values = values[: rows * cols].reshape(rows, cols)
        valid = values != self.nodata
        if np.any(values[valid] < 0) or np.any(values != np.round(values)):
            raise _bad(name, "ASCII grid values must be non-negative integers")
        codes = np.where(valid, values, 0).astype(np.int64)
        top = int(codes.max(initial=0))
        table = np.arange(top + 1, dtype=np.float64) * self.precision * 60.0 / self.interval_min
        return Frame(self.info, codes.astype(np.uint16 if top < 65536 else np.int64), table, valid)


def time_struct(stamp: str) -> tuple[int, int, int, int, int, int]:
    """``YYYYMMDDHHMM`` → (year, month, day, hour, minute, 0), validated."""
    y, mo, d, h, mi = (
        int(stamp[:4]),
        int(stamp[4:6]),
        int(stamp[6:8]),
        int(stamp[8:10]),
        int(stamp[10:12]),
    )
    if not (1 <= mo <= 12 and 1 <= d <= calendar.monthrange(y, mo)[1] and h < 24 and mi < 60):
        raise ValueError(stamp)
    return (y, mo, d, h, mi, 0)


def decode(data: bytes, name: str) -> Frame:
    """Decode decompressed RADOLAN bytes into a `Frame` (see the module docstring)."""
    if data[:5] == b"ncols":
        return AsciiGrid(data, name).decode(data)
    if data[:8] == HDF5_MAGIC:
        return OdimComposite(data, name).decode()
    header = parse_header(data, name)
    d = RadolanDecode(header, name)
    payload = _payload(data, header, d, name)
    if d.single_byte:
        raw8 = np.frombuffer(payload, dtype=np.uint8).reshape(d.rows, d.cols)[::-1]
        valid = raw8 < 249  # 249 clutter, 250 no data, above: reserved
        codes = np.where(valid, raw8, np.uint8(0))
        table = _rvp6_table()
    else:
        words = np.frombuffer(payload, dtype="<u2").reshape(d.rows, d.cols)[::-1]
        valid = (words & 0x2000) == 0
        codes = (words & 0x0FFF) | ((words >> 2) & 0x1000)  # 12-bit value, bit 12 = negative
        codes = np.where(valid, codes, np.uint16(0)).astype(np.uint16, copy=False)
        table = _depth_table(d.precision, d.interval_min)
    return Frame(_info(name, d), codes, table, valid)
