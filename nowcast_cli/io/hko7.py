"""HKO-7 radar echo benchmark: 480x480 PNG frames with per-frame zlib ``.mask`` files.

Format (``shared/research/hko7_format.md``, from the benchmark code sxjscience/HKO-7):

- ``<root>/radarPNG/YYYY/MM/DD/RADyymmddHHMMSS.png``: 8-bit greyscale 480x480, north-up, pixel P
  is the store pixel directly (dBZ = 70·P/255 - 10), one frame every 6 minutes.
- ``<root>/radarPNG_mask/YYYY/MM/DD/RADyymmddHHMMSS.mask``: a raw zlib stream of the 230 400 bytes
  of a NumPy bool array (480, 480), True = valid. The distributed archive may nest the trees
  one level deeper (``radarPNG/radarPNG`` and ``radarPNG/radarPNG_mask``); both layouts are found.

Decisions:

- Frame time comes from the file name, read in the reader's time zone (Hong Kong time by
  default: the archive does not state it) and converted to UTC; ``store_attrs`` records this.
- A frame without a mask file is ingested all-valid, with a warning. A mask that does not
  decompress to exactly 480x480 bytes of 0/1 makes the frame a bad file.
- ``valid`` is the per-frame mask only; the benchmark's static exclusion mask (``mask_dat.npz``,
  shipped in ``nowcast_cli/data/hko7``) is a static array of the store, and the benchmark's rainy
  train/valid/test day lists are store attributes.
- Only 8-bit greyscale PNGs are accepted as they are; colour PNGs are accepted only when their
  channels are identical (a greyscale image saved as colour), so a pixel is never re-weighted.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
import io
import re
import struct
import warnings
import zlib
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from nowcast_cli.errors import ConfigError
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

SIZE = 480  # frame edge in pixels
MASK_BYTES = SIZE * SIZE  # one byte (0/1) per pixel
INTERVAL_S = 360  # nominal 6-minute cadence of the archive
PRODUCT = "HKO-7 CAPPI"
GRID = Grid(
    "HKO-7 480x480 (CAPPI 2 km, nominally 512 km square centred on Hong Kong; not georeferenced)",
    SIZE,
    SIZE,
)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_TREE = "radarPNG"
MASK_TREE = "radarPNG_mask"
DEFAULT_TIMEZONE = "Asia/Hong_Kong"

_NAME_RE = re.compile(r"RAD(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})\.png", re.IGNORECASE)
_OFFSET_RE = re.compile(r"(?:UTC|GMT)?\s*([+-])(\d{1,2})(?::?(\d{2}))?", re.IGNORECASE)
_DATE_DIRS = (re.compile(r"\d{4}"), re.compile(r"\d{2}"), re.compile(r"\d{2}"))


def parse_timezone(spec: str) -> dt.tzinfo:
    """Time zone from an IANA name ("Asia/Hong_Kong") or a fixed offset ("+08:00", "UTC").

    Offsets read the intuitive way: "UTC+8" and "+08:00" are both eight hours ahead of UTC
    (unlike POSIX TZ strings and the IANA ``Etc/GMT-8`` names, whose signs are inverted).

    Raises
    ------
    ConfigError
        If `spec` is neither.
    """
    text = spec.strip()
    if text.upper() in {"UTC", "Z", "GMT"}:
        return dt.UTC
    m = _OFFSET_RE.fullmatch(text)
    if m:
        sign, hours, minutes = m.group(1), int(m.group(2)), int(m.group(3) or 0)
        if hours > 23 or minutes > 59:
            raise ConfigError(f"time zone offset {spec!r} is out of range (-23:59..+23:59)")
        delta = dt.timedelta(hours=hours, minutes=minutes)
        return dt.timezone(-delta if sign == "-" else delta)
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ConfigError(
            f"unknown time zone {spec!r}: give an IANA name such as 'Asia/Hong_Kong' "
            "or a fixed offset such as '+08:00' or 'UTC'"
        ) from None


def frame_time(filename: str, tz: dt.tzinfo) -> int:
    """UTC seconds since the epoch of a ``RADyymmddHHMMSS.png`` name read in time zone `tz`.

    Ambiguous local times (a daylight-saving fall-back hour) resolve to the first occurrence.

    Raises
    ------
    BadFileError
        If the name does not follow the pattern or holds an invalid date.
    """
    m = _NAME_RE.fullmatch(filename)
    if not m:
        raise BadFileError(filename, "file name is not RADyymmddHHMM00.png")
    yy, month, day, hour, minute, second = (int(g) for g in m.groups())
    try:
        local = dt.datetime(2000 + yy, month, day, hour, minute, second, tzinfo=tz)
    except ValueError as exc:
        raise BadFileError(filename, f"file name holds an invalid date ({exc})") from None
    return calendar.timegm(local.utctimetuple())


@functools.lru_cache(maxsize=1)
def dbz_table() -> np.ndarray:
    """Return the dBZ of each PNG pixel value, 70·P/255 - 10 (store pixel = PNG pixel)."""
    table = 70.0 * np.arange(256, dtype=np.float64) / 255.0 - 10.0
    table.flags.writeable = False
    return table


def decode_png(raw: bytes, name: str) -> tuple[np.ndarray, list[str]]:
    """Decode an HKO-7 PNG to a (480, 480) uint8 array.

    Returns
    -------
    pixels : np.ndarray
        (480, 480) uint8, north-up.
    remarks : list of str
        Warnings the PNG decoder raised (decoded anyway).

    Raises
    ------
    BadFileError
        If the bytes are not a 480x480 8-bit greyscale PNG or are corrupt.
    """
    if not raw:
        raise BadFileError(name, "empty file")
    if raw[:8] != PNG_SIGNATURE:
        raise BadFileError(name, "not a PNG file (bad signature)")
    if len(raw) < 33 or raw[12:16] != b"IHDR":
        raise BadFileError(name, "truncated PNG (no IHDR header)")
    width, height = struct.unpack(">II", raw[16:24])
    if (width, height) != (SIZE, SIZE):
        raise BadFileError(name, f"image is {width}x{height}, HKO-7 frames are {SIZE}x{SIZE}")
    from PIL import Image  # Pillow comes with matplotlib; imported here to keep `nowcast` fast

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with Image.open(io.BytesIO(raw), formats=["PNG"]) as im:
                im.load()
                mode = im.mode
                if mode in {"P", "PA"}:  # palette: compare the colours it maps to
                    arr, mode = np.array(im.convert("RGB")), "RGB"
                else:
                    arr = np.array(im)
        except MemoryError:
            raise
        except Exception as exc:  # Pillow reports corrupt data with many exception types
            raise BadFileError(name, f"corrupt PNG ({type(exc).__name__}: {exc})") from None
    remarks = [f"PNG decoder: {w.message}" for w in caught]
    if mode == "LA":  # alpha is not data: drop it, as the benchmark's greyscale read does
        arr, mode = np.ascontiguousarray(arr[..., 0]), "L"
    elif mode in {"RGB", "RGBA"}:
        rgb = arr[..., :3]
        if not (
            np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])
        ):
            raise BadFileError(name, f"colour PNG (mode {mode}); HKO-7 frames are greyscale")
        arr, mode = np.ascontiguousarray(rgb[..., 0]), "L"
    if mode != "L":
        raise BadFileError(name, f"PNG mode {mode}; HKO-7 frames are 8-bit greyscale")
    if arr.shape != (SIZE, SIZE) or arr.dtype != np.uint8:
        raise BadFileError(name, f"decoded image is {arr.shape} {arr.dtype}, not 480x480 uint8")
    return arr, remarks


def decode_mask(raw: bytes, name: str) -> np.ndarray:
    """Decode a ``.mask`` file (zlib stream of 480·480 bool bytes) to a (480, 480) bool array.

    Raises
    ------
    BadFileError
        If it is not a zlib stream of exactly 230 400 bytes of 0/1 (the name is the mask's).
    """
    d = zlib.decompressobj()
    try:
        out = d.decompress(raw, MASK_BYTES + 1)
        if len(out) <= MASK_BYTES and not d.eof:
            out += d.flush()
    except zlib.error as exc:
        raise BadFileError(name, f"mask is not a valid zlib stream ({exc})") from None
    if len(out) > MASK_BYTES:
        raise BadFileError(name, f"mask decompresses to more than {SIZE}x{SIZE} bytes")
    if not d.eof:
        raise BadFileError(name, f"mask zlib stream is truncated ({len(out)} bytes decoded)")
    if len(out) != MASK_BYTES:
        raise BadFileError(
            name, f"mask decompresses to {len(out)} bytes, not {SIZE}x{SIZE} = {MASK_BYTES}"
        )
    flat = np.frombuffer(out, dtype=np.uint8)
    if flat.max(initial=0) > 1:
        raise BadFileError(name, "mask holds byte values other than 0 and 1")
    return flat.reshape(SIZE, SIZE).astype(bool)


def _png_tree(path: Path) -> Path | None:
    """Return the innermost ``radarPNG`` folder holding `path`, or None."""
    for parent in path.absolute().parents:
        if parent.name.lower() == PNG_TREE.lower():
            return parent
    return None


def _in_mask_tree(path: Path) -> bool:
    return any(p.name.lower() == MASK_TREE.lower() for p in path.absolute().parents)


@functools.lru_cache(maxsize=1)
def _metadata() -> dict[str, Any]:
    """Load the shipped HKO-7 benchmark metadata: day lists and static masks."""
    base = resources.files("nowcast_cli").joinpath("data", "hko7")

    def days(filename: str) -> list[str]:
        out = []
        for line in base.joinpath(filename).read_text(encoding="utf-8").splitlines():
            token = line.split(",")[0].split()[0] if line.strip() else ""
            if token:
                out.append(f"{token[:4]}-{token[4:6]}-{token[6:8]}")
        return out

    masks = np.load(io.BytesIO(base.joinpath("mask_dat.npz").read_bytes()), allow_pickle=False)
    return {
        "train": days("hko7_rainy_train_days.txt"),
        "valid": days("hko7_rainy_valid_days.txt"),
        "test": days("hko7_rainy_test_days.txt"),
        "uncertain": days("uncertain_days.txt"),
        "exclude_mask": np.array(masks["exclude_mask"], dtype=np.uint8),
    }


@READERS.register("hko7")
class Hko7Reader(Reader):
    """HKO-7 benchmark radar echoes: 480x480 PNG frames + zlib .mask files (radarPNG trees).

    Parameters
    ----------
    timezone : str
        Time zone of the file-name stamps: an IANA name or a fixed offset ("+08:00", "UTC").
        The archive does not state it; Hong Kong time is the default.
    mask_root : str or Path, optional
        Root of the mask tree (``…/radarPNG_mask``, holding ``YYYY/MM/DD/*.mask``). By default
        the sibling ``radarPNG_mask`` of each frame's ``radarPNG`` tree (flat or nested layout).
    """

    name = "hko7"
    attribution = (
        "Source: Hong Kong Observatory (HKO), HKO-7 radar echo dataset (Shi et al., NeurIPS 2017)"
    )
    licence = (
        "Radar frames: HKO confidential, under HKO's signed undertaking (no redistribution). "
        "Benchmark metadata (day lists, exclusion mask): MIT, sxjscience/HKO-7"
    )
    zr = (58.53, 1.56)
    # HKO-7 masks exclude noisy pixels that still hold a measured value: keep it (exact round trip)
    zero_invalid = False
    zr_reference = (
        "HKO-7 benchmark Z = 58.53 R^1.56 (sxjscience/HKO-7 nowcasting/config.py and the paper "
        "authors' code; the paper's printed b = 1.056 is a typo, SPEC §3)"
    )

    def __init__(
        self, timezone: str = DEFAULT_TIMEZONE, mask_root: str | Path | None = None
    ) -> None:
        self.timezone = str(timezone)
        self._tz = parse_timezone(self.timezone)
        self.mask_root = Path(mask_root).expanduser() if mask_root is not None else None
        if self.mask_root is not None and not self.mask_root.is_dir():
            raise ConfigError(f"mask root {self.mask_root} is not a directory")

    def candidates(self, paths: list[Path]) -> list[Path]:
        """PNG files under ``radarPNG`` trees (all PNGs of a folder that has no such tree).

        Files named explicitly are taken as given, so a wrong one is reported, not dropped.
        """
        out: list[Path] = []
        for root in paths:
            if root.is_file():
                out.append(root)
                continue
            pngs = [
                p for p in walk_files([root]) if p.suffix.lower() == ".png" and not _in_mask_tree(p)
            ]
            in_tree = [p for p in pngs if _png_tree(p) is not None]
            out.extend(in_tree or pngs)
        return out

    def mask_candidates(self, png: Path) -> list[Path]:
        """Where the mask of frame `png` may be, most likely first."""
        mask_name = Path(png.name).with_suffix(".mask").name
        tree = _png_tree(png)
        if tree is not None:
            rel = png.absolute().parent.relative_to(tree) / mask_name
        else:
            dirs = png.absolute().parent.parts[-3:]
            dated = len(dirs) == 3 and all(
                r.fullmatch(d) for r, d in zip(_DATE_DIRS, dirs, strict=True)
            )
            rel = Path(*dirs, mask_name) if dated else Path(mask_name)
        if self.mask_root is not None:
            bases = [self.mask_root, self.mask_root / MASK_TREE]
        elif tree is not None:
            bases = [tree.parent / MASK_TREE, tree.parent / MASK_TREE / MASK_TREE]
            if tree.parent.name.lower() == PNG_TREE.lower():  # nested radarPNG/radarPNG
                outer = tree.parent.parent
                bases += [outer / MASK_TREE, outer / MASK_TREE / MASK_TREE]
        else:
            return [png.with_suffix(".mask")]
        return [b / rel for b in bases]

    def scan(self, path: Path, workdir: Path) -> list[Scanned | Failure]:
        """Date a frame from its name, check its PNG header and find its mask file."""
        try:
            time = frame_time(path.name, self._tz)
            with path.open("rb") as f:
                head = f.read(33)
        except BadFileError as exc:
            return [Failure(str(path), exc.reason)]
        except OSError as exc:
            return [Failure(str(path), f"cannot read ({exc.strerror or exc})")]
        if not head:
            return [Failure(str(path), "empty file")]
        if head[:8] != PNG_SIGNATURE:
            return [Failure(str(path), "not a PNG file (bad signature)")]
        if len(head) < 33 or head[12:16] != b"IHDR":
            return [Failure(str(path), "truncated PNG (no IHDR header)")]
        width, height = struct.unpack(">II", head[16:24])
        if (width, height) != (SIZE, SIZE):
            return [
                Failure(str(path), f"image is {width}x{height}, HKO-7 frames are {SIZE}x{SIZE}")
            ]
        options = self.mask_candidates(path)
        mask = next((m for m in options if m.is_file()), options[0])
        item = Item(path, path.name, (("mask", str(mask)),))
        info = FrameInfo(path.name, time, PRODUCT, GRID, INTERVAL_S, "reflectivity")
        return [Scanned(item, info)]

    def read(self, item: Item) -> Frame:
        """Decode a frame and its mask; a missing mask gives an all-valid frame and a warning."""
        time = frame_time(item.path.name, self._tz)
        try:
            raw = item.path.read_bytes()
        except OSError as exc:
            raise BadFileError(item.name, f"cannot read ({exc.strerror or exc})") from None
        codes, remarks = decode_png(raw, item.name)
        mask_path = Path(item.extra("mask") or self.mask_candidates(item.path)[0])
        try:
            mask_raw: bytes | None = mask_path.read_bytes()
        except FileNotFoundError:
            mask_raw = None
        except OSError as exc:
            raise BadFileError(
                item.name, f"cannot read mask {mask_path} ({exc.strerror or exc})"
            ) from None
        if mask_raw is None:
            valid = np.ones((SIZE, SIZE), dtype=bool)
            remarks.append(f"no mask file ({mask_path}); all pixels taken as valid")
        else:
            try:
                valid = decode_mask(mask_raw, mask_path.name)
            except BadFileError as exc:
                raise BadFileError(item.name, f"mask {mask_path}: {exc.reason}") from None
        info = FrameInfo(item.name, time, PRODUCT, GRID, INTERVAL_S, "reflectivity")
        return Frame(info, codes, dbz_table(), valid, remarks)

    def static_arrays(self) -> dict[str, np.ndarray]:
        """Return the benchmark's static exclusion mask: uint8 (480, 480), 1 = excluded."""
        return {"exclude_mask": _metadata()["exclude_mask"].copy()}

    def store_attrs(self) -> dict[str, Any]:
        """Source attributes plus the time-zone assumption and the benchmark's rainy days."""
        meta = _metadata()
        return {
            **super().store_attrs(),
            "pixel_formula": "dBZ = 70 * P / 255 - 10 (the PNG pixel is the store pixel)",
            "time_zone": {
                "file_names": self.timezone,
                "note": (
                    "HKO-7 does not state the time zone of its file names; they were read as "
                    f"{self.timezone} and converted to UTC (override with --timezone)"
                ),
            },
            "rainy_days": {
                "train": meta["train"],
                "valid": meta["valid"],
                "test": meta["test"],
                "uncertain": meta["uncertain"],
                "calendar": "Hong Kong local days, as in the benchmark",
                "source": "sxjscience/HKO-7 hko_data/hko7_rainy_*_days.txt (MIT)",
            },
            "static_arrays": {
                "exclude_mask": (
                    "HKO-7 mask_dat.npz exclude_mask: 1 = persistent outlier or outside the "
                    "radar's valid circle (excluded by the benchmark)"
                ),
            },
        }
