"""Fixtures shared by the top-level tests (helpers live in serve_helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from serve_helpers import serve_process


@pytest.fixture(scope="module")
def local_url() -> Iterator[str]:
    """The URL of a local echo agent shared by a test module."""
    with serve_process() as (url, _):
        yield url
