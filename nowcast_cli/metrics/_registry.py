"""The metric registry; score modules register themselves here (never via the package)."""

from __future__ import annotations

from typing import Any

from nowcast_cli.registry import Registry

METRICS: Registry[Any] = Registry("metric")
