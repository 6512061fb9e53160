from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data"
SHARED_DATA = REPO.parent / "shared" / "data"

settings.register_profile(
    "dev", deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci",
    deadline=None,
    max_examples=60,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return SAMPLE


@pytest.fixture(scope="session")
def ry_dir() -> Path:
    return SAMPLE / "dwd" / "ry_20200101_seq13"


@pytest.fixture(scope="session")
def shared_dwd() -> Path:
    d = SHARED_DATA / "dwd"
    if not d.is_dir():
        pytest.skip("shared/data/dwd is not beside the repository")
    return d


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty working directory (defaults resolve from the cwd)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
