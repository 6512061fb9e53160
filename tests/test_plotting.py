"""Figures from arrays: the colour scale, units, no-data, and that each figure really renders."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from matplotlib import colors
from PIL import Image

from nowcast_cli import encoding, plotting

DWD = (256.0, 1.42)


def png_of(fig) -> Image.Image:  # type: ignore[no-untyped-def]
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=60)
    buf.seek(0)
    img = Image.open(buf)
    img.load()
    return img


def not_blank(img: Image.Image) -> bool:
    a = np.asarray(img.convert("L"), dtype=float)
    return a.std() > 5


def blob_frames(n: int = 4, size: int = 24) -> np.ndarray:
    """uint8 frames with a moving blob of 0.5 → 40 mm/h."""
    yy, xx = np.mgrid[:size, :size]
    out = []
    for t in range(n):
        r = np.hypot(yy - 12, xx - 6 - 3 * t)
        rate = 40.0 * np.exp(-(r**2) / 20)
        out.append(encoding.dbz_to_pixel(encoding.rate_to_dbz(rate, *DWD)))
    return np.stack(out)


def test_colour_scale_levels_and_special_colours() -> None:
    scale = plotting.rain_scale()
    assert scale.levels[0] == 0.1
    assert len(scale.levels) == len(plotting.RAIN_COLOURS) + 1
    # 3 mm/h falls in the [2, 4) class, 0.05 mm/h is below the scale (white), NaN is no data
    assert colors.to_hex(scale.cmap(scale.norm(3.0))) == plotting.RAIN_COLOURS[4]
    assert colors.to_hex(scale.cmap(scale.norm(0.05))) == "#ffffff"
    assert colors.to_hex(scale.cmap.get_bad()) == plotting.NO_DATA


def test_to_rate_decodes_with_the_stores_zr_and_masks_no_data() -> None:
    pixels = np.array([[0, 128], [200, 255]], dtype=np.uint8)
    valid = np.array([[True, True], [False, True]])
    rate = plotting.to_rate(pixels, valid, DWD)
    # P = 128 → 25.14 dBZ → R = (10^2.514 / 256)^(1/1.42), computed here by hand
    assert rate[0, 1] == pytest.approx((10 ** (25.137254902 / 10) / 256) ** (1 / 1.42), rel=1e-6)
    assert rate[0, 0] == 0.0
    assert rate.mask.tolist() == [[False, False], [True, False]]


def test_sample_figure_rows_columns_and_pixels() -> None:
    frames = blob_frames()
    valid = np.ones(frames.shape, bool)
    valid[:, :4, :4] = False
    fig = plotting.plot_sample(
        frames, valid, {"persistence": np.repeat(frames[:1], 4, 0)}, [5, 10, 15, 20], 0, DWD
    )
    axes = fig.axes
    assert len(axes) == 2 * 4 + 1  # 2 rows × 4 lead times + colour bar
    assert [ax.get_title() for ax in axes[:4]] == ["+5 min", "+10 min", "+15 min", "+20 min"]
    assert axes[0].get_ylabel() == "observed"
    assert axes[4].get_ylabel() == "persistence"
    assert axes[-1].get_ylabel() == "rain rate (mm/h)"
    assert "1970-01-01 00:00 UTC" in fig._suptitle.get_text()
    img = png_of(fig)
    assert img.format == "PNG"
    assert not_blank(img)


def test_store_figure_with_projected_extent() -> None:
    frame = blob_frames(1)[0]
    x = 1000.0 * np.arange(24) + 500.0
    y = 1000.0 * np.arange(24)[::-1] + 500.0
    fig = plotting.plot_store(frame, None, DWD, x=x, y=y, title="t")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "x (km, projected)"
    assert ax.get_xlim() == pytest.approx((0.0, 24.0))
    assert ax.get_ylim() == pytest.approx((0.0, 24.0))
    assert not_blank(png_of(fig))


def test_scores_figure_bands_and_panels() -> None:
    rows = []
    for run, base in (("ff-mse", 0.5), ("mse", 0.4)):
        for thr in (0.5, 2.0):
            for lead in (5, 10, 15):
                v = base - lead / 100
                rows.append((run, lead, thr, "csi", v, v - 0.05, v + 0.05))
    df = pd.DataFrame(
        rows, columns=["run", "lead_minutes", "threshold", "metric", "value", "low", "high"]
    )
    fig = plotting.plot_scores(df, "csi")
    assert [ax.get_title() for ax in fig.axes] == ["CSI ≥ 0.5 mm/h", "CSI ≥ 2 mm/h"]
    assert len(fig.axes[0].lines) == 2
    assert len(fig.axes[0].collections) == 2  # one interval band per run
    assert not_blank(png_of(fig))


@pytest.mark.parametrize("fmt", ["svg", "pdf"])
def test_vector_formats(fmt: str) -> None:
    fig = plotting.plot_store(blob_frames(1)[0], None, DWD)
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt)
    head = buf.getvalue()[:200]
    assert (b"<svg" in head or b"<?xml" in head) if fmt == "svg" else head.startswith(b"%PDF")
