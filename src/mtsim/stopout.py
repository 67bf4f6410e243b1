"""Stop out (reference §5.2): the server closes positions when the margin level falls to the
stop-out level.

When an account's margin level (percent, ``ACCOUNT_STOPOUT_MODE`` PERCENT: the only mode the
simulated accounts have) is at or below ``margin_so_so``, the position with the largest loss
at the current prices is closed at market (Bid for a buy, Ask for a sell), then the figures
are recomputed and the next one closed, until the level is back above stop out or nothing is
left. Deals carry reason SO (6): MT5's from the server, MT4's derived by the EA from the
comment below (:mod:`mtsim.markers`).

Enabled by ``ServerConfig.stop_out``. Choices (⚠):

- Checked after every quote, for the accounts with positions on the quoted symbol (equity
  only moves with prices; orders that add margin need free margin, reference §5.2), not
  after trades.
- Only positions whose symbol is inside a trade session can be closed; pending orders are
  left alone.
- The comment (MT5: the close order's and deal's; MT4: the closed ticket's, replacing its
  own) is ``so: <level>%/<equity>/<margin>``, the marker MT4 servers write [O]; MT4 EAs
  derive deal reason 6 from it (docs/protocol.md §10).
"""

from __future__ import annotations

from mtgate.domain.enums import DealReason
from mtgate.domain.symbols import profit
from mtsim.book import Account, Position
from mtsim.closing import close_volume
from mtsim.config import market_open
from mtsim.ledger import Venue
from mtsim.markers import stop_out_comment
from mtsim.money import figures

_EPS = 1e-9


def stop_out(venue: Venue, acct: Account) -> int:
    """Close positions while the margin level is at or below stop out; returns how many."""
    closed = 0
    while acct.positions:
        fig = figures(acct, venue.symbols, venue.feed)
        if fig.margin <= _EPS or fig.margin_level > acct.margin_so_so + _EPS:
            break
        now = venue.clock.now_ms()
        candidates = [
            p for p in acct.positions.values() if market_open(venue.config.sessions, p.symbol, now)
        ]
        if not candidates:
            break
        worst = min(candidates, key=lambda p: _floating(venue, acct, p))
        bid, ask, _ = venue.feed.quote(worst.symbol)
        marker = stop_out_comment(fig.margin_level, fig.equity, fig.margin)
        close_volume(
            venue,
            acct,
            venue.symbols[worst.symbol],
            worst,
            volume=worst.volume,
            price=bid if worst.buy else ask,
            reason=DealReason.SO,
            comment=marker,
        )
        closed += 1
    return closed


def _floating(venue: Venue, acct: Account, pos: Position) -> float:
    bid, ask, _ = venue.feed.quote(pos.symbol)
    spec = venue.symbols[pos.symbol]
    return profit(spec, pos.buy, pos.volume, pos.price_open, bid if pos.buy else ask, acct.currency)
