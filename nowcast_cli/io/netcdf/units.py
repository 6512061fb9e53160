"""Units of a precipitation or reflectivity variable, read with UDUNITS-2 (cf-units).

CF's ``units`` attribute is a UDUNITS-2 string, so cf-units (the UDUNITS-2 library the CF tools
use) reads every spelling the convention allows: ``mm h-1``, ``mm/h``, ``m/hr``, ``kg s-1 m-2``,
``mm per hour``, scaled units such as ``0.1 mm`` or ``1e-3 m``, ``cm``… A unit is classified by
what it converts to: a length or a mass per area is an amount per time step (1 kg of water per
m² is 1 mm), a speed or a mass flux is a rate, ``mm6 m-3`` is linear reflectivity Z. ``dBZ`` is
logarithmic, not a UDUNITS unit, and is recognised by name.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from typing import Literal

Kind = Literal["amount", "rate", "reflectivity"]

STANDARD_NAMES: dict[str, Kind] = {
    "rainfall_amount": "amount",
    "precipitation_amount": "amount",
    "lwe_thickness_of_precipitation_amount": "amount",
    "thickness_of_rainfall_amount": "amount",
    "rainfall_rate": "rate",
    "rainfall_flux": "rate",
    "precipitation_flux": "rate",
    "lwe_precipitation_rate": "rate",
    "equivalent_reflectivity_factor": "reflectivity",
}
UNITS_HELP = (
    "any UDUNITS spelling of an amount per time step (mm, kg m-2, m, cm, 0.1 mm), a rate "
    "(mm/h, mm h-1, mm hr-1, m/hr, mm/min, mm/day, kg m-2 s-1, m s-1) or a reflectivity (dBZ; "
    "linear Z in mm6 m-3)"
)
# (kind, the unit the factor converts to): amounts to mm, rates to mm/h, linear Z to mm6 m-3
_TARGETS: tuple[tuple[Kind, str], ...] = (
    ("amount", "mm"),
    ("amount", "kg m-2"),
    ("rate", "mm h-1"),
    ("rate", "kg m-2 h-1"),
    ("reflectivity", "mm6 m-3"),
)
_LOCK = threading.Lock()  # the UDUNITS-2 C library is not thread-safe


@dataclass(frozen=True)
class Units:
    """How to turn a variable's values into mm/h or dBZ.

    Attributes
    ----------
    text : str
        The units as written (file or ``--units``).
    kind : {"amount", "rate", "reflectivity"}
        What the values are.
    factor : float
        Amounts: to mm; rates: to mm/h; reflectivity: 1 (dBZ) or to mm6 m-3 (linear Z).
    linear : bool
        Reflectivity given as Z (mm6 m-3 or another volume-of-drops unit) rather than dBZ.
    """

    text: str
    kind: Kind
    factor: float = 1.0
    linear: bool = False

    @property
    def names_precipitation(self) -> bool:
        """Whether these units alone mark a variable as precipitation (no standard_name).

        Amounts must be in mm or kg m-2 (a length in m or cm may be anything), rates at most
        1 mm/s per unit (m s-1 and km/h are wind speeds), linear reflectivity in mm6 m-3 (m3 is
        a volume); dBZ always.
        """
        if self.kind == "rate":
            return self.factor <= 3600.0
        return self.factor == 1.0


@functools.lru_cache(maxsize=256)
def parse_units(text: str | None) -> Units | None:
    """Units of a precipitation or reflectivity variable, or None if not recognised.

    Any UDUNITS-2 string that converts to mm or kg m-2 (amount), mm/h or kg m-2 h-1 (rate) or
    mm6 m-3 (linear reflectivity), and ``dBZ`` (any case). UDUNITS is case-sensitive: ``MM``
    is not ``mm``.
    """
    if not isinstance(text, str) or not text.strip():
        return None
    s = text.strip()
    if s.lower() == "dbz":
        return Units(s, "reflectivity")
    hit = convert_units(s, tuple(target for _, target in _TARGETS))
    if hit is None:
        return None
    kind = _TARGETS[hit[0]][0]
    return Units(s, kind, hit[1], kind == "reflectivity")


def convert_units(text: str | None, targets: tuple[str, ...]) -> tuple[int, float] | None:
    """(index of the first of `targets` that UDUNITS-2 converts `text` to, factor), or None."""
    if not text:
        return None
    from cf_units import Unit

    with _LOCK:
        try:
            unit = Unit(text)
        except ValueError:  # UDUNITS cannot parse it
            return None
        if unit.is_unknown() or unit.is_no_unit():
            return None
        index = next((i for i, t in enumerate(targets) if unit.is_convertible(t)), None)
        if index is None:
            return None
        factor = float(unit.convert(1.0, targets[index]))
    # UDUNITS multiplies binary approximations of 1e-3, 60, 3600…: 60.00000000000001 mm/h per
    # mm/min; 15 significant digits give back the decimal factor
    return index, float(f"{factor:.15g}")
