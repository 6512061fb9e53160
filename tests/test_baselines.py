"""The extrapolation baseline against pysteps' own nowcast of the same frames."""

from __future__ import annotations

import builtins
import contextlib
import io
from pathlib import Path

import numpy as np
import pytest

from nowcast_cli import baselines
from nowcast_cli.errors import ConfigError, MissingDependencyError
from tests.forecasts import rain_frames

pytest.importorskip("pysteps")
pytest.importorskip("cv2")  # pysteps' Lucas–Kanade needs OpenCV


def pysteps_nowcast(frames: np.ndarray, n: int, method: str) -> np.ndarray:
    """pysteps' documented recipe: motion on the log field, then its extrapolation nowcast."""
    with contextlib.redirect_stdout(io.StringIO()):
        from pysteps import motion, nowcasts

        x = frames.astype(float)
        if method == "VET":
            v = motion.get_method("VET")(x, verbose=False)
        else:
            v = motion.get_method(method)(x[-3:])
        fc = nowcasts.get_method("extrapolation")(x[-1], v, n)
    # pysteps marks pixels advected from outside the domain as NaN; ours are "no echo"
    return np.floor(np.clip(np.nan_to_num(fc, nan=0.0), 0, 255) + 0.5).astype(np.uint8)


@pytest.fixture(scope="module")
def real_frames(tmp_path_factory, sample_dir: Path) -> np.ndarray:
    """The 120×120 training copy of the real KNMI sample (rain over the Netherlands)."""
    from nowcast_cli.ingest import ingest
    from nowcast_cli.store import Store

    out = tmp_path_factory.mktemp("knmi") / "knmi.zarr"
    ingest("knmi", [sample_dir / "knmi"], out, workers=1)
    frames, _ = Store.open(out).read(0, 8, 120)
    return frames


@pytest.mark.parametrize("start", [0, 4])
def test_lucas_kanade_matches_pysteps_nowcast(real_frames: np.ndarray, start: int) -> None:
    x = real_frames[start : start + 4]
    assert (x >= 100).sum() > 200  # there is rain to move
    ours = baselines.extrapolate(x, 6)
    assert ours.shape == (6, 120, 120)
    assert ours.dtype == np.uint8
    assert np.array_equal(ours, pysteps_nowcast(x, 6, "LK"))
    assert not np.array_equal(ours[-1], x[-1])  # it moved


def test_vet_matches_pysteps_nowcast() -> None:
    x = rain_frames(2, (32, 32), 4)  # small, two frames: VET minimises for seconds otherwise
    ours = baselines.extrapolate(x, 3, motion="vet", motion_frames=2)
    assert np.array_equal(ours, pysteps_nowcast(x, 3, "VET"))


def test_a_translating_field_lands_where_it_should() -> None:
    rng = np.random.default_rng(1)
    from scipy.ndimage import gaussian_filter

    base = gaussian_filter(rng.normal(size=(96, 96)), 3)
    base = np.clip(128 + 900 * base, 0, 255)
    # 1 px/frame to the south, 2 px/frame to the east
    frames = np.stack([np.roll(base, (t, 2 * t), (0, 1)) for t in range(4)]).astype(np.uint8)
    truth = np.roll(base, (3 + 3, 6 + 6), (0, 1))
    out = baselines.extrapolate(frames, 3)
    inner = (slice(20, 76), slice(20, 76))
    err = np.abs(out[-1].astype(float) - truth)[inner].mean()
    persistence = np.abs(frames[-1].astype(float) - truth)[inner].mean()
    assert err < 0.1 * persistence


def test_zero_motion_is_persistence() -> None:
    frames = np.repeat(rain_frames(1, (30, 30), 3), 3, axis=0)
    assert np.array_equal(baselines.extrapolate(frames, 2), np.repeat(frames[-1:], 2, 0))


def test_bad_arguments() -> None:
    x = rain_frames(3, (20, 20), 0)
    with pytest.raises(ConfigError, match="uint8"):
        baselines.extrapolate(x.astype(float), 2)
    with pytest.raises(ConfigError, match="unknown motion method 'flow'"):
        baselines.extrapolate(x, 2, motion="flow")
    with pytest.raises(ConfigError, match="n_out"):
        baselines.extrapolate(x, 0)


def test_without_pysteps_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_pysteps(name, *args, **kwargs):
        if name == "pysteps" or name.startswith("pysteps."):
            raise ImportError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pysteps)
    with pytest.raises(MissingDependencyError, match=r"pip install 'nowcast\[pysteps\]'"):
        baselines.extrapolate(rain_frames(3, (20, 20), 0), 2)
