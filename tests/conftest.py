"""Shared fixtures: one corpus of cells run through every stage of the pipeline."""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import graphlstm as gl

settings.register_profile("default", max_examples=30, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=20000, deadline=None,
                          suppress_health_check=list(HealthCheck))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

from cells import CORPUS  # noqa: E402


def corpus_cell(name: str) -> gl.Cell:
    if name in gl.zoo.names():
        return gl.zoo.get(name)
    return gl.parse(CORPUS[name], name=name)


ALL_CELLS = list(gl.zoo.names()) + sorted(CORPUS)


@pytest.fixture(params=ALL_CELLS)
def any_cell(request) -> gl.Cell:
    """Every zoo cell and every extra corpus cell."""
    return corpus_cell(request.param)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
