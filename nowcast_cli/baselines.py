"""Classical baselines on arrays: the extrapolation nowcast (SPEC §5).

``persistence`` is a model of the registry (`nowcast_cli.models`, ``create_model("persistence")``);
``extrapolation`` lives here because it is not a neural network: optical flow (pysteps' dense
Lucas–Kanade, or VET) estimated on the last observed frames, then semi-Lagrangian advection of
the last frame (``pysteps.extrapolation.semilagrangian``), exactly what pysteps' own
``nowcasts.extrapolation.forecast`` does. pysteps (and OpenCV, which its Lucas–Kanade needs)
is an optional extra: ``pip install 'nowcast[pysteps]'``.

Which field is advected: the store's uint8 pixels, as floats. A pixel is affine in dBZ, hence
in dB of rain rate (dBZ = 10·log10 a + b·dBR) with 0 for no echo: the log-transformed field
with a constant "no rain" value that pysteps' own extrapolation example advects (it converts
rain rates to dBR with a fill value before estimating motion and advecting). Motion estimation
on a log field is what pysteps recommends (intensities spanning orders of magnitude swamp the
optical flow in linear units), and advecting the pixels keeps the forecast on exactly the
encoding every other model forecasts and every score reads, with no Z–R round trip; zero motion
reproduces persistence bit for bit. Pixels whose trajectory starts outside the domain get
P = 0 (no echo flows in from where nothing is known), so every forecast pixel has a value and
runs are scored on the same pixels. Pixels without data in the input are 0 in the store
already, i.e. "no echo", as pysteps' example sets missing values to the fill value.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from typing import Any

import numpy as np

from nowcast_cli.errors import ConfigError, MissingDependencyError

#: motion methods: our option name → pysteps' ``motion.get_method`` name
MOTION_METHODS = {"lk": "LK", "vet": "VET"}
INSTALL_HINT = "pip install 'nowcast[pysteps]'"


def _pysteps() -> tuple[Any, Any]:
    """The motion and semi-Lagrangian modules of pysteps (its import banner swallowed)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            from pysteps import motion
            from pysteps.extrapolation import semilagrangian
    except ImportError as exc:
        raise MissingDependencyError(
            f"the extrapolation baseline needs pysteps ({exc.name or exc}): {INSTALL_HINT}"
        ) from None
    return motion, semilagrangian


def motion_field(frames: np.ndarray, method: str = "lk") -> np.ndarray:
    """Advection field (2, H, W) in pixels per frame interval (x then y, pysteps' order).

    Parameters
    ----------
    frames : np.ndarray
        (T, H, W) uint8 pixels, oldest first; T ≥ 2 (VET uses the last 2 or 3).
    method : {"lk", "vet"}
        Dense Lucas–Kanade (default) or the variational echo tracking of pysteps.
    """
    key = method.lower()
    if key not in MOTION_METHODS:
        raise ConfigError(f"unknown motion method {method!r}; valid: {', '.join(MOTION_METHODS)}")
    x = np.asarray(frames, dtype=np.float64)
    if x.ndim != 3 or x.shape[0] < 2:
        raise ConfigError(f"motion needs (T ≥ 2, H, W) frames, got shape {x.shape}")
    motion, _ = _pysteps()
    if key == "vet":
        x = x[-3:]
    try:
        with (
            contextlib.redirect_stdout(io.StringIO()),
            warnings.catch_warnings(),
            np.errstate(divide="ignore", invalid="ignore"),
        ):
            # VET reports its progress on stdout; Lucas–Kanade's outlier test inverts the
            # covariance of the neighbouring vectors, and pysteps (or numpy, called from it)
            # warns when they are too few or all equal (still motion, a single cell): the
            # field is then what pysteps makes of it, and the warning is noise to a user
            warnings.filterwarnings("ignore", module=r"pysteps\.")
            warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"numpy\.")
            v = motion.get_method(MOTION_METHODS[key])(
                x, **({"verbose": False} if key == "vet" else {})
            )
    except ImportError as exc:  # pysteps raises MissingOptionalDependency without OpenCV
        raise MissingDependencyError(
            f"the {key} motion field needs OpenCV ({exc}): {INSTALL_HINT}"
        ) from None
    except Exception as exc:
        if type(exc).__name__ == "MissingOptionalDependency":
            raise MissingDependencyError(
                f"the {key} motion field needs OpenCV ({exc}): {INSTALL_HINT}"
            ) from None
        raise
    out: np.ndarray = np.asarray(v, dtype=np.float64)
    return out


def extrapolate(
    frames: np.ndarray, n_out: int, *, motion: str = "lk", motion_frames: int = 3
) -> np.ndarray:
    """Extrapolation nowcast of one sequence: the last frame advected along the motion field.

    Parameters
    ----------
    frames : np.ndarray
        (m, H, W) uint8 observed pixels on the store encoding, oldest first; m ≥ 2.
    n_out : int
        Number of future frames, one product interval apart.
    motion : {"lk", "vet"}
        Motion estimation method.
    motion_frames : int
        How many of the last frames estimate the motion (≥ 2).

    Returns
    -------
    np.ndarray
        (n_out, H, W) uint8 pixels, leads 1 … n_out intervals after the last frame; P = 0
        where the trajectory starts outside the domain.

    Raises
    ------
    MissingDependencyError
        Without pysteps (or OpenCV for Lucas–Kanade).
    """
    f = np.asarray(frames)
    if f.dtype != np.uint8 or f.ndim != 3:
        raise ConfigError(f"frames must be uint8 (m, H, W), got {f.dtype} {f.shape}")
    if n_out < 1 or motion_frames < 2 or f.shape[0] < 2:
        raise ConfigError(
            f"need n_out ≥ 1, motion_frames ≥ 2 and at least 2 frames; got {n_out}, "
            f"{motion_frames} and {f.shape[0]}"
        )
    velocity = motion_field(f[-motion_frames:], motion)
    _, semilagrangian = _pysteps()
    with contextlib.redirect_stdout(io.StringIO()):
        adv = semilagrangian.extrapolate(f[-1].astype(np.float64), velocity, n_out, outval=0.0)
    out: np.ndarray = np.floor(np.clip(adv, 0.0, 255.0) + 0.5).astype(np.uint8)
    return out
