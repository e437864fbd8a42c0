"""The dashboard's static files (docs/DASHBOARD.md): one HTML page, its style sheet and its script,
written for this project (no third-party code is vendored: nothing to licence but ours). The
worker serves them (`stream/web.py`); `engagement report` inlines them into one file (`html_report.py`).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

__all__ = ["ASSETS", "asset"]

ASSETS = ("dashboard.html", "dashboard.css", "dashboard.js")


@cache
def asset(name: str) -> bytes:
    """The bytes of one of `ASSETS`, read once from the installed package."""
    if name not in ASSETS:
        raise KeyError(name)
    return resources.files(__name__).joinpath(name).read_bytes()
