"""Fixtures for core tests; the helpers themselves live in core_helpers.py."""

from __future__ import annotations

import pytest
from core_helpers import Pair


@pytest.fixture
def pair() -> Pair:
    return Pair()
