"""The bridge meets the simulator's injected faults over real sockets (mtsim.faults).

The bridge's retries of each fault are in test_retries.py. A partial IOC fill (MT5 10010 DONE_PARTIAL, reference
§3.3, §3.7) is a success whose ``volume`` is the filled volume (docs/protocol.md §5).
"""

from __future__ import annotations

import msgspec

from mtgate.domain.enums import SymbolFillingFlag
from mtgate.domain.orders import OrderStatus
from mtsim.faults import Fault, FaultKind
from tests.integration.conftest import MT5H, Harness


def _ioc_only(harness: Harness, symbol: str) -> None:
    """The trade server offers only IOC on ``symbol``, so the EA picks IOC (docs/protocol.md
    §11 "Filling")."""
    symbols = harness.server(MT5H).symbols
    symbols[symbol] = msgspec.structs.replace(
        symbols[symbol], filling_mode=int(SymbolFillingFlag.IOC)
    )


async def test_a_partial_fill_is_recorded_with_the_filled_volume(harness: Harness) -> None:
    _ioc_only(harness, "EURUSD")
    harness.terminal(MT5H).plan.script(Fault(FaultKind.PARTIAL_FILL, ratio=0.5))
    result = await harness.bridge.place_market_order(
        account=harness.account(MT5H),
        symbol="EURUSD",
        side="buy",
        volume=0.2,
        magic=7,
        client_order_id="partial-1",
    )
    [position] = harness.server(MT5H).positions(harness.world.terminals[MT5H].config.login)
    assert position.volume == 0.1
    assert result.status == OrderStatus.FILLED
    assert (result.volume, result.fill_volume, result.unfilled_volume) == (0.2, 0.1, 0.1)
    stored = await harness.bridge.journal.get("partial-1")
    assert stored is not None
    assert (stored.volume, stored.fill_volume) == (0.2, 0.1)
    assert harness.terminal(MT5H).plan.faults_by_kind() == {"partial_fill": 1}
    fill = (await harness.bridge.journal.events("partial-1"))[-1]
    assert fill.to_status == OrderStatus.FILLED
    assert "partial fill (10010): 0.1 of 0.2 lots, 0.1 not filled and cancelled" in fill.detail
