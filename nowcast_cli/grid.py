"""The raster a store's frames live on: shape, projection and georeferenced corners.

Shared by the readers (which describe the grid of each file) and the store (which records it),
so that the store does not import the readers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Grid"]


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
    """

    name: str
    rows: int
    cols: int
    cell_m: float = 0.0
    projection: str = ""
    x_ll: float | None = None
    y_ll: float | None = None

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
            "orientation": "north-up (row 0 is the northern edge, columns west to east)",
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
