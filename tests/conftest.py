"""Shared test fixtures."""

import os

import pytest

SHARED_DATA = os.path.abspath(
    os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "shared", "data"))


@pytest.fixture
def shared_data() -> str:
  """Path of ../shared/data; skips the test where that folder is absent."""
  if not os.path.isdir(SHARED_DATA):
    pytest.skip(f"real data folder {SHARED_DATA} is absent (expected ../shared/data beside the repo)")
  return SHARED_DATA
