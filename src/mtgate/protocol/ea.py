"""What an EA checks itself, before it calls the platform, and when: the rules every
terminal side of the project follows (the simulator's EA and the MetaTrader5 agent).

Rules of docs/protocol.md that a real EA enforces on its own side of the terminal:

- **-2 ``invalid_request``** (§4.2): a field value that passes the schema but cannot be
  executed as asked. The EA builds an MQL ``datetime`` from ``expiration_ms``; that type ends
  at 3000-12-31 23:59:59 (``MT_DATETIME_MAX_MS``) and has no negative values, so a
  ``pending_order`` or ``modify_order`` whose expiration lies outside cannot be turned into a
  platform call at all. The EA refuses it and the platform is never called, which is what a
  negative code guarantees. The simulated EA answers it when the request arrives, ahead of
  queued trades (responses may come in any order, §4.1): nothing is queued, so nothing can
  execute.
- **The welcome's values** (§3.3): after the proof, the nonce, the heartbeat range and the
  features the EA offered; :func:`welcome_refusal`.
- **Liveness before each trade** (§4.3 rule 4, §8): the EA starts a trade only if the session
  is alive: no ``bye`` arrived, the socket is open, and a frame arrived within the last 3
  heartbeat intervals. :func:`heartbeat_expired` is the time part of that test.
"""

from __future__ import annotations

from mtgate.domain.enums import Platform
from mtgate.domain.limits import MT_DATETIME_MAX_MS
from mtgate.protocol import messages as m
from mtgate.protocol.auth import valid_nonce

HEARTBEAT_MS_MIN = 100
HEARTBEAT_MS_MAX = 60_000
"""The ``welcome.heartbeat_ms`` an EA accepts (docs/protocol.md §8)."""
MISSED_HEARTBEATS = 3
"""A peer silent for this many heartbeat intervals is dead (docs/protocol.md §8)."""


COMMENT_MAX = 31
"""The longest comment an EA passes on (docs/protocol.md §13); a longer one is refused, never
cut: a cut comment could lose the client order id's attempt suffix."""
_GTC, _DAY, _SPECIFIED, _SPECIFIED_DAY = 0, 1, 2, 3


def invalid_request(msg: m.Request, platform: Platform) -> str | None:
    """Why the EA cannot execute request ``msg`` as asked (answered -2 ``invalid_request``,
    the platform not called), or None when it can try. docs/protocol.md §4.2, §5, §10, §13."""
    if isinstance(msg, m.MarketOrder | m.PendingOrder | m.GetTick) and not msg.symbol:
        return "symbol is empty"  # (in ``positions``/``orders``, "" means every symbol)
    comment = getattr(msg, "comment", "")
    if len(comment) > COMMENT_MAX:
        return f"comment of {len(comment)} characters (at most {COMMENT_MAX})"
    if isinstance(msg, m.MarketOrder) and msg.order_type not in (0, 1):
        return f"order_type {msg.order_type} is not a market order (0 buy, 1 sell)"
    if isinstance(msg, m.PendingOrder):
        if not 2 <= msg.order_type <= 7:
            return f"order_type {msg.order_type} is not a pending order (2-7)"
        if platform == Platform.MT4 and msg.order_type in (6, 7):
            return "MT4 has no stop-limit orders"
        if msg.order_type not in (6, 7) and msg.stoplimit != 0:
            return "stoplimit is for stop-limit orders only (it must be 0)"
    if isinstance(msg, m.PendingOrder | m.ModifyOrder):
        expiration = msg.expiration_ms
        if not 0 <= expiration <= MT_DATETIME_MAX_MS:
            return (
                f"expiration_ms {expiration} is not an MQL datetime "
                "(1970-01-01 to 3000-12-31 23:59:59)"
            )
        refusal = _time_type_refusal(msg.time_type, expiration, platform)
        if refusal is not None:
            return refusal
    if isinstance(msg, m.OrderGet) and (msg.ticket != 0) == (msg.client_id != ""):
        return "order_get takes exactly one of ticket and client_id"
    if isinstance(msg, m.History):
        if msg.since_ms < 0 or msg.until_ms < 0:
            return "since_ms and until_ms must be >= 0"
        if msg.until_ms and msg.since_ms > msg.until_ms:
            return f"since_ms {msg.since_ms} is after until_ms {msg.until_ms}"
    return None


def _time_type_refusal(time_type: int, expiration_ms: int, platform: Platform) -> str | None:
    if time_type not in (_GTC, _DAY, _SPECIFIED, _SPECIFIED_DAY):
        return f"time_type {time_type} is not an ORDER_TIME value (0-3)"
    if platform == Platform.MT4 and time_type in (_DAY, _SPECIFIED_DAY):
        return "MT4 has no DAY or SPECIFIED_DAY orders"
    if time_type in (_GTC, _DAY) and expiration_ms != 0:
        return f"time_type {time_type} takes no expiration_ms"
    if time_type in (_SPECIFIED, _SPECIFIED_DAY) and expiration_ms == 0:
        return f"time_type {time_type} needs an expiration_ms"
    return None


def welcome_refusal(msg: m.Welcome, offered: frozenset[str]) -> str | None:
    """The EA's third check of a ``welcome`` whose proof verified (docs/protocol.md §3.3):
    why its values cannot be taken (``bye invalid_message``), or None."""
    if not valid_nonce(msg.nonce):
        return "welcome nonce must be 32 lowercase hex characters"
    if not HEARTBEAT_MS_MIN <= msg.heartbeat_ms <= HEARTBEAT_MS_MAX:
        return (
            f"welcome heartbeat_ms {msg.heartbeat_ms} is outside "
            f"{HEARTBEAT_MS_MIN}-{HEARTBEAT_MS_MAX}"
        )
    extra = sorted(set(msg.features) - offered)
    if extra:
        return f"welcome features {extra} were not offered in hello"
    return None


def heartbeat_expired(now_s: float, last_frame_s: float, heartbeat_ms: int) -> bool:
    """Whether nothing arrived for more than :data:`MISSED_HEARTBEATS` intervals: at
    ``now_s``, with the last frame received at ``last_frame_s`` (monotonic seconds). A frame
    exactly 3 intervals old still counts: it arrived within them."""
    return now_s - last_frame_s > MISSED_HEARTBEATS * heartbeat_ms / 1000
