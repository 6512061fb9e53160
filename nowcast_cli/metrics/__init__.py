"""Verification scores (SPEC §8): contingency scores and the paper's image scores.

Every score is registered in `METRICS` under the lower-case name ``scores.csv`` uses:
categorical ``csi``, ``pod``, ``far``, ``hss``, ``ets``, ``bias`` (`categorical`), continuous
``mse``, ``mae``, ``b_mse``, ``b_mae``, ``gdl``, ``psnr``, ``ssim`` (`continuous`).

Contract
--------
Frames are uint8 pixels on the store encoding (dBZ = 70·P/255 − 10; P = 0 no echo). A pixel
takes part only where the observation is valid. Scores are computed from accumulators that
follow one interface, so chunks of a test set can be read in any order (or in parallel) and
combined:

``Acc.init(blocks, leads, …)`` → empty; ``acc.accumulate(fcst, obs, valid, index, block)``
adds a chunk of forecasts (S, L, H, W) against observed frames (U, H, W) (``index`` (S, L)
points into them, −1 where there is no observation; ``block`` (S,) is each sample's
issue-time block, for the bootstrap); ``acc.merge(other)`` → their union;
``acc.compute()`` → score per lead.

- categorical scores (``score(tp, fn, fp, tn)``) come from contingency tables pooled over all
  samples per lead and threshold; rain ≥ τ ⇔ P ≥ P(τ) through the store's Z–R;
- continuous scores (``score(sums)``) are per-frame values from the kernel's pixel sums,
  averaged over the frames of a lead;
- undefined values are NaN, never 0 or 1.
"""

from __future__ import annotations

from nowcast_cli.metrics import categorical as categorical
from nowcast_cli.metrics import continuous as continuous
from nowcast_cli.metrics._registry import METRICS
from nowcast_cli.metrics.categorical import Contingency
from nowcast_cli.metrics.continuous import Continuous

__all__ = ["METRICS", "Contingency", "Continuous", "categorical", "continuous"]
