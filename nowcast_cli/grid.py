"""The raster a store's frames live on: shape, projection and georeferenced corners.

Shared by the readers (which describe the grid of each file) and the store (which records it),
so that the store does not import the readers. `Box` is a pixel region of a grid: the part of
the full-resolution frames that a square training copy covers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nowcast_cli.errors import ConfigError

__all__ = ["NORTH_UP", "Box", "Grid", "centred_square", "parse_box"]

NORTH_UP = "north-up (row 0 is the northern edge, columns west to east)"


@dataclass(frozen=True)
class Grid:
    """The raster a frame lives on.

    Parameters
    ----------
    name : str
        Human name of the grid ("RADOLAN national 900x900").
    rows, cols : int
        Frame shape.
    cell_m : float
        Cell edge length in metres (square cells), 0 if unknown.
    projection : str
        PROJ string of the projection, empty if unknown.
    x_ll, y_ll : float or None
        Projected coordinates (metres) of the lower-left corner of the lower-left cell.
    orientation : str
        How rows and columns are laid out; north-up unless a source cannot tell.
    """

    name: str
    rows: int
    cols: int
    cell_m: float = 0.0
    projection: str = ""
    x_ll: float | None = None
    y_ll: float | None = None
    orientation: str = NORTH_UP

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols)."""
        return (self.rows, self.cols)

    def attrs(self) -> dict[str, Any]:
        """JSON-serializable description for store attributes."""
        return {
            "name": self.name,
            "rows": self.rows,
            "cols": self.cols,
            "cell_m": self.cell_m,
            "projection": self.projection,
            "x_ll_m": self.x_ll,
            "y_ll_m": self.y_ll,
            "orientation": self.orientation,
        }

    def x_centres(self) -> np.ndarray | None:
        """Projected x of the cell centres (metres), west to east, if georeferenced."""
        if self.x_ll is None or not self.cell_m:
            return None
        return self.x_ll + self.cell_m * (np.arange(self.cols) + 0.5)

    def y_centres(self) -> np.ndarray | None:
        """Projected y of the cell centres (metres), north to south, if georeferenced."""
        if self.y_ll is None or not self.cell_m:
            return None
        return self.y_ll + self.cell_m * (self.rows - np.arange(self.rows) - 0.5)

    def box_extent(self, box: Box) -> dict[str, float] | None:
        """Projected bounds (metres) of the cells of `box`, if the grid is georeferenced."""
        if self.x_ll is None or self.y_ll is None or not self.cell_m:
            return None
        c = self.cell_m
        return {
            "x_min": self.x_ll + c * box.x0,
            "x_max": self.x_ll + c * box.x1,
            "y_min": self.y_ll + c * (self.rows - box.y1),
            "y_max": self.y_ll + c * (self.rows - box.y0),
        }


@dataclass(frozen=True)
class Box:
    """A pixel region of a frame: columns ``x0:x1``, rows ``y0:y1`` (ends exclusive).

    Rows count from row 0 of the stored frame (the northern edge for north-up grids).
    """

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        """Columns covered."""
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        """Rows covered."""
        return self.y1 - self.y0

    @property
    def is_square(self) -> bool:
        """Whether the region has as many rows as columns."""
        return self.width == self.height

    def as_list(self) -> list[int]:
        """``[x0, y0, x1, y1]``."""
        return [self.x0, self.y0, self.x1, self.y1]

    def check(self, shape: tuple[int, int], size: int) -> None:
        """Raise `ConfigError` unless the box is a square inside `shape` of at least `size`."""
        rows, cols = shape
        text = ",".join(map(str, self.as_list()))
        if not (0 <= self.x0 < self.x1 <= cols and 0 <= self.y0 < self.y1 <= rows):
            raise ConfigError(
                f"crop {text} is not inside the {rows}x{cols} grid "
                f"(need 0 <= x0 < x1 <= {cols} and 0 <= y0 < y1 <= {rows})"
            )
        if not self.is_square:
            raise ConfigError(
                f"crop {text} is {self.width}x{self.height} pixels: the training copy keeps "
                "square cells, so the crop must be square (x1 - x0 == y1 - y0)"
            )
        if self.width < size:
            raise ConfigError(
                f"crop {text} is {self.width} pixels wide, smaller than the {size}x{size} "
                "training copy (copies are made by averaging, never by upsampling)"
            )


def centred_square(rows: int, cols: int) -> Box:
    """The largest square of a rows×cols grid, centred (odd margins put the extra pixel last)."""
    side = min(rows, cols)
    y0 = (rows - side) // 2
    x0 = (cols - side) // 2
    return Box(x0, y0, x0 + side, y0 + side)


def parse_box(value: str | Sequence[int]) -> Box:
    """A `Box` from ``"x0,y0,x1,y1"`` (pixels, ends exclusive) or a sequence of four ints.

    Raises
    ------
    ConfigError
        If the value is not four non-negative integers.
    """
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",")]
        if len(parts) != 4 or not all(re.fullmatch(r"\d+", p) for p in parts):
            raise ConfigError(
                f"--crop {value!r}: expected four non-negative integers x0,y0,x1,y1 "
                "(pixels of the full grid, row 0 at the top, ends exclusive), e.g. 19,0,209,190"
            )
        nums = [int(p) for p in parts]
    else:
        nums = [int(v) for v in value]
        if len(nums) != 4 or min(nums) < 0:
            raise ConfigError(f"crop {list(value)}: expected four non-negative integers")
    return Box(*nums)
