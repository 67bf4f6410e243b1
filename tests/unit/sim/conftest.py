"""Fixtures for the trade-server model tests (helpers live in ``simdesk``)."""

from __future__ import annotations

import pytest

from mtgate.domain.enums import Platform
from tests.unit.sim.simdesk import MakeDesk, make_desk


@pytest.fixture(name="make_desk")
def make_desk_fixture() -> MakeDesk:
    """``make_desk(platform, margin_mode=..., symbols=..., config=..., balance=..., ...)``."""
    return make_desk


@pytest.fixture(params=[Platform.MT4, Platform.MT5], ids=["mt4", "mt5"])
def platform(request: pytest.FixtureRequest) -> Platform:
    return request.param  # type: ignore[no-any-return]
