"""nowcast: deep-learning precipitation nowcasting from radar archives to verified forecasts.

Importing the package is cheap on purpose: it must not import torch, numba or zarr.
"""

__version__ = "0.1.0"
