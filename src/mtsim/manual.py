"""Trades the account holder makes by hand (terminal, web or mobile), not through the bridge.

They follow the same rules and produce the same events and history as the bridge's trades,
with deal reason CLIENT (0) on MT5 and, by default, magic 0 and no ``mg:`` comment, so tests
can check that the bridge notices external trades. On MT4 the EA cannot tell who traded: it
derives a deal's reason from the comment and magic (docs/protocol.md §10,
:func:`mtsim.markers.mt4_deal_reason`), so a manual trade on a magic ≠ 0 ticket (a manual
close of the bridge's position, say) reads as EXPERT, exactly as on a real terminal. They
are not subject to the bridge terminal's connection or Algo Trading button
(``ServerConfig.connected`` / ``trade_allowed``): a manual trade may come from another
terminal.
"""

from __future__ import annotations

import dataclasses

from mtgate.domain.enums import DealReason, Platform
from mtgate.protocol.messages import ClosePosition, MarketOrder, TradeResult
from mtsim.book import Account
from mtsim.ledger import Venue
from mtsim.positions import close_position
from mtsim.trading import market_order
from mtsim.validation import Checks


def _checks(venue: Venue, platform: Platform) -> Checks:
    config = dataclasses.replace(venue.config, connected=True, trade_allowed=True)
    return Checks(platform, config, venue.closures)


def market(
    venue: Venue,
    acct: Account,
    symbol: str,
    order_type: int,
    volume: float,
    sl: float,
    tp: float,
    comment: str,
    magic: int,
) -> TradeResult:
    req = MarketOrder(
        id=0,
        symbol=symbol,
        order_type=order_type,
        volume=volume,
        magic=magic,
        comment=comment,
        sl=sl,
        tp=tp,
    )
    return market_order(venue, _checks(venue, venue.platform), acct, req, DealReason.CLIENT)


def close(venue: Venue, acct: Account, ticket: int, volume: float) -> TradeResult:
    req = ClosePosition(id=0, ticket=ticket, volume=volume)
    return close_position(venue, _checks(venue, venue.platform), acct, req, DealReason.CLIENT)
