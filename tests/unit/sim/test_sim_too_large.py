"""An answer that cannot be framed is -5 ``too_large`` (docs/protocol.md §4.2, §13), as an EA
answers it, never a task that dies with the request unanswered."""

from __future__ import annotations

import pytest

from mtgate.domain.enums import Platform
from mtgate.protocol import messages as m
from mtsim import terminal as terminal_module
from tests.unit.sim.simdesk import MakeDesk
from tests.unit.sim.simwire import wire_session


async def test_a_read_whose_answer_is_over_the_limit_is_refused_minus_5(
    make_desk: MakeDesk, monkeypatch: pytest.MonkeyPatch
) -> None:
    desk = make_desk(Platform.MT5)
    async with wire_session(desk) as (bridge, _terminal):
        small = await bridge.request(m.AccountInfo(id=1))
        assert small.ok
        # Shrink the limit below an account report (about 300 bytes): the same read is now
        # an answer that cannot be framed.
        monkeypatch.setattr(terminal_module, "_SEALED_BODY_MAX", 200)
        refused = await bridge.request(m.AccountInfo(id=2))
        assert not refused.ok and refused.error is not None
        assert (refused.error.code, refused.error.name) == (-5, "too_large")
        monkeypatch.setattr(terminal_module, "_SEALED_BODY_MAX", m.MAX_FRAME_BYTES - 80)
        again = await bridge.request(m.AccountInfo(id=3))
        assert again.ok  # the session goes on
