"""Radar sources: one reader per file, registered in `READERS` under the name users type.

Contract (see `nowcast_cli.io.base`): a reader class with ``scan(path, workdir)`` returning
`Scanned` frames or `Failure` entries, and ``read(item) -> Frame``; a `Frame` is quantized
(``codes`` + ``table`` of rain rate in mm/h or reflectivity in dBZ), north-up, with a ``valid``
mask (False = no data). Readers raise only `BadFileError` for bad input.

Add a source: create ``io/<name>.py`` with ``@READERS.register("<name>") class …(Reader)`` and
add one import line below.
"""

from __future__ import annotations

from nowcast_cli.io.base import Reader
from nowcast_cli.registry import Registry

READERS: Registry[type[Reader]] = Registry("source")

from nowcast_cli.io import dwd  # noqa: E402, F401, I001  (registers "dwd"; one line per reader)
from nowcast_cli.io import fmi  # noqa: E402, F401  (registers "fmi")
from nowcast_cli.io import hko7  # noqa: E402, F401  (registers "hko7")
from nowcast_cli.io import knmi  # noqa: E402, F401  (registers "knmi")
from nowcast_cli.io import netcdf  # noqa: E402, F401  (registers "netcdf")


def create_reader(name: str, **options: object) -> Reader:
    """Instantiate the reader registered as `name` with reader-specific `options`."""
    cls = READERS.get(name)
    return cls(**options)
