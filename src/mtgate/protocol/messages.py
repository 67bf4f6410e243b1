"""Wire messages of protocol v1, as msgspec structs.

Every frame is one JSON object whose ``type`` field names the message. Requests are tagged with
their operation name and carry a per-session ``id``; the answer is a ``res`` with the same id.
Unknown fields are refused (``forbid_unknown_fields``): a field one side does not understand
must never be dropped silently from an order. New operations and fields arrive as new message
types, announced in the handshake's ``features`` (docs/protocol.md §Versioning).
"""

from __future__ import annotations

import msgspec

from mtgate.domain.limits import Finite, Int64, TimeMs
from mtgate.domain.symbols import SymbolSpec

PROTOCOL_VERSION = 2
MAX_FRAME_BYTES = 1 << 20


class Message(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, omit_defaults=True):
    """Base of every frame."""


# --- handshake ------------------------------------------------------------------------------


class Hello(Message, tag="hello"):
    """EA → bridge, first frame. ``nonce``: 32 hex chars from a CSPRNG."""

    v: Int64
    platform: str
    build: Int64
    login: Int64
    server: str
    company: str
    currency: str
    leverage: Int64
    margin_mode: Int64
    terminal_id: str
    ea_version: str
    nonce: str
    features: list[str] = []


class Welcome(Message, tag="welcome"):
    """Bridge → EA: its own nonce and its proof of the terminal key."""

    v: Int64
    nonce: str
    proof: str
    session: str
    heartbeat_ms: Int64
    features: list[str] = []


class Auth(Message, tag="auth"):
    """EA → bridge: the EA's proof of the terminal key."""

    proof: str


class Ready(Message, tag="ready"):
    """Bridge → EA: the handshake is complete; requests may follow."""


class Bye(Message, tag="bye"):
    """Either side, before closing: why."""

    reason: str
    code: str = "closed"


# --- heartbeat ------------------------------------------------------------------------------


class Ping(Message, tag="ping"):
    t_ms: Int64


class Pong(Message, tag="pong"):
    t_ms: Int64


# --- requests (bridge → EA) -----------------------------------------------------------------


class Request(Message):
    id: Int64


class AccountInfo(Request, tag="account_info"):
    pass


class Symbols(Request, tag="symbols"):
    """Specs of the named symbols; all symbols in Market Watch when ``names`` is empty."""

    names: list[str] = []


class GetTick(Request, tag="tick"):
    symbol: str


class Positions(Request, tag="positions"):
    symbol: str = ""


class Orders(Request, tag="orders"):
    """Pending orders."""

    symbol: str = ""


class OrderGet(Request, tag="order_get"):
    """Everything the account knows under a ticket or a client order id: pending orders,
    positions, history orders and deals. Exactly one of ``ticket`` / ``client_id`` is set."""

    ticket: Int64 = 0
    client_id: str = ""


class History(Request, tag="history"):
    """History orders and deals with a time in ``[since_ms, until_ms]`` (0: up to now)."""

    since_ms: Int64
    until_ms: Int64 = 0


class Subscribe(Request, tag="subscribe"):
    """Push ``tick`` events for ``ticks`` (symbol names). Replaces the previous subscription."""

    ticks: list[str] = []


class MarketOrder(Request, tag="market_order"):
    """Buy (``order_type`` 0) or sell (1) at market. ``price`` 0: the current Ask/Bid.
    ``deviation`` in points. SL/TP 0: none."""

    symbol: str
    order_type: Int64
    volume: Finite
    magic: Int64
    comment: str
    price: Finite = 0.0
    deviation: Int64 = 0
    sl: Finite = 0.0
    tp: Finite = 0.0
    filling: Int64 = -1
    deadline_ms: Int64 = 0
    """Feature ``deadline``: never start the trade once the EA's clock reads this (§4.4)."""


class PendingOrder(Request, tag="pending_order"):
    """``order_type`` 2..7. ``stoplimit``: the limit price of a stop-limit order (MT5 only).
    ``expiration_ms`` 0: good till cancelled."""

    symbol: str
    order_type: Int64
    volume: Finite
    price: Finite
    magic: Int64
    comment: str
    stoplimit: Finite = 0.0
    sl: Finite = 0.0
    tp: Finite = 0.0
    expiration_ms: Int64 = 0
    time_type: Int64 = 0
    filling: Int64 = -1
    deadline_ms: Int64 = 0
    """Feature ``deadline``: never start the trade once the EA's clock reads this (§4.4)."""


class ModifyOrder(Request, tag="modify_order"):
    """New price, stop-limit price, SL, TP and expiration of a pending order (all values are
    the order's new full state, as in OrderModify / TRADE_ACTION_MODIFY)."""

    ticket: Int64
    price: Finite
    sl: Finite = 0.0
    tp: Finite = 0.0
    stoplimit: Finite = 0.0
    expiration_ms: Int64 = 0
    time_type: Int64 = 0
    deadline_ms: Int64 = 0
    """Feature ``deadline``: never start the trade once the EA's clock reads this (§4.4)."""


class CancelOrder(Request, tag="cancel_order"):
    ticket: Int64
    deadline_ms: Int64 = 0
    """Feature ``deadline``: never start the trade once the EA's clock reads this (§4.4)."""


# --- position operations (feature "positions", docs/protocol.md §5.2) ------------------------


class ModifyPosition(Request, tag="modify_position"):
    """New SL and TP of an open position (MT5 TRADE_ACTION_SLTP / MT4 OrderModify on a
    market order). Both values are the position's new full state: 0 removes a level.
    ``ticket``: the position ticket (MT4: the order ticket)."""

    ticket: Int64
    sl: Finite = 0.0
    tp: Finite = 0.0
    deadline_ms: Int64 = 0
    """Feature ``deadline``: never start the trade once the EA's clock reads this (§4.4)."""


class ClosePosition(Request, tag="close_position"):
    """Close all (``volume`` 0) or part of a position at market (MT5 TRADE_ACTION_DEAL with
    ``position``; netting: the opposite deal on the symbol; MT4 OrderClose). ``price`` 0: the
    current Bid (buy) / Ask (sell). ``deviation`` in points. ``comment``: MT5 close order's
    comment (MT4 OrderClose takes none)."""

    ticket: Int64
    volume: Finite = 0.0
    price: Finite = 0.0
    deviation: Int64 = 0
    comment: str = ""
    deadline_ms: Int64 = 0
    """Feature ``deadline``: never start the trade once the EA's clock reads this (§4.4)."""


class CloseBy(Request, tag="close_by"):
    """Close a position by an opposite one on the same symbol (MT4 OrderCloseBy / MT5
    TRADE_ACTION_CLOSE_BY with ``position`` = ``ticket``, ``position_by`` = ``opposite``;
    hedging accounts only)."""

    ticket: Int64
    opposite: Int64
    deadline_ms: Int64 = 0
    """Feature ``deadline``: never start the trade once the EA's clock reads this (§4.4)."""


# --- account synchronization (feature "sync", docs/protocol.md §5.3) ------------------------


class Sync(Request, tag="sync"):
    """Push a ``snapshot`` event now and then every ``interval_ms`` (0 stops the pushes).

    The first snapshot carries the history (deals and history orders) from ``since_ms``; each
    later one carries only the history added since the previous snapshot. Snapshots are built
    between trades and never delay one (docs/protocol.md §5.3). Replaces the previous
    subscription; ends with the session."""

    interval_ms: Int64
    since_ms: Int64 = 0


READ_OPS: tuple[type[Request], ...] = (
    AccountInfo,
    Symbols,
    GetTick,
    Positions,
    Orders,
    OrderGet,
    History,
    Subscribe,
    Sync,
)
TRADE_OPS: tuple[type[Request], ...] = (
    MarketOrder,
    PendingOrder,
    ModifyOrder,
    CancelOrder,
    ModifyPosition,
    ClosePosition,
    CloseBy,
)
POSITIONS_FEATURE = "positions"
"""The ``features`` name that announces ``modify_position``, ``close_position`` and
``close_by`` (docs/protocol.md §12)."""
SYNC_FEATURE = "sync"
"""The ``features`` name that announces ``sync`` and the ``snapshot`` event."""
DEADLINE_FEATURE = "deadline"
"""The ``features`` name under which trade requests carry ``deadline_ms`` and the EA's
``ping.t_ms`` is its monotonic clock (docs/protocol.md §4.4)."""
PIPELINE_FEATURE = "pipeline"
"""MT5 only: the EA runs up to :data:`PIPELINE_DEPTH` trades at once (``OrderSendAsync``),
started in arrival order, each answered when its own result comes (docs/protocol.md §4.3)."""
PIPELINE_DEPTH = 4
"""Trades an EA with ``pipeline`` accepts before the first of them is answered."""

# --- responses and events (EA → bridge) -----------------------------------------------------


class Error(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """``code`` is the platform's own: MT4 ``GetLastError()``, MT5 ``retcode``. ``bid``/``ask``
    carry the new prices of a requote. Protocol-level errors use negative codes."""

    code: Int64
    name: str
    message: str
    bid: Finite = 0.0
    ask: Finite = 0.0


class Response(Message, tag="res"):
    """``ok: true`` carries ``result``; ``ok: false`` carries ``error``; never both."""

    id: Int64
    ok: bool
    result: msgspec.Raw = msgspec.Raw(b"null")
    error: Error | None = None

    def __post_init__(self) -> None:
        if self.ok == (self.error is not None):
            raise ValueError("a response has an error exactly when ok is false")


class Event(Message, tag="evt"):
    """``seq`` starts at 1 after ``ready`` and grows by one; a gap means: resync now."""

    seq: Int64
    name: str
    data: msgspec.Raw


# --- result and report payloads -------------------------------------------------------------


class Payload(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, gc=False):
    pass


class TradeResult(Payload):
    """``code``: MT4 0 / MT5 10009 DONE or 10008 PLACED. ``order``: the order ticket (MT4: the
    ticket); ``deal``/``position``: MT5 deal ticket and position id (0 when none)."""

    code: Int64
    order: Int64
    volume: Finite
    price: Finite
    bid: Finite
    ask: Finite
    time_ms: TimeMs
    deal: Int64 = 0
    position: Int64 = 0
    comment: str = ""
    remainder: Int64 = 0
    """``close_position`` / ``close_by`` only (feature "positions"): the ticket of the open
    position holding what is left of the closed one(s), 0 when nothing is left. MT4: a new
    ticket (docs/protocol.md §10); MT5: the position's own ticket. Never set by the v1 base
    operations."""


class Tick(Payload):
    symbol: str
    bid: Finite
    ask: Finite
    time_ms: TimeMs


class AccountReport(Payload):
    login: Int64
    server: str
    currency: str
    leverage: Int64
    margin_mode: Int64
    balance: Finite
    credit: Finite
    profit: Finite
    equity: Finite
    margin: Finite
    margin_free: Finite
    margin_level: Finite
    margin_so_call: Finite
    margin_so_so: Finite
    trade_allowed: bool
    trade_expert: bool
    limit_orders: Int64 = 0
    company: str = ""
    name: str = ""


class PositionReport(Payload):
    """MT4: an open market order (``identifier`` = ticket). Profit excludes swap/commission."""

    ticket: Int64
    identifier: Int64
    symbol: str
    type: Int64
    volume: Finite
    price_open: Finite
    price_current: Finite
    time_ms: TimeMs
    magic: Int64 = 0
    comment: str = ""
    sl: Finite = 0.0
    tp: Finite = 0.0
    profit: Finite = 0.0
    swap: Finite = 0.0
    commission: Finite = 0.0
    time_update_ms: TimeMs = 0


class OrderReport(Payload):
    """A pending order, or an order in history (``state`` = ORDER_STATE_*)."""

    ticket: Int64
    symbol: str
    type: Int64
    state: Int64
    volume_initial: Finite
    volume_current: Finite
    price_open: Finite
    time_setup_ms: TimeMs
    magic: Int64 = 0
    comment: str = ""
    stoplimit: Finite = 0.0
    sl: Finite = 0.0
    tp: Finite = 0.0
    price_current: Finite = 0.0
    time_done_ms: TimeMs = 0
    expiration_ms: TimeMs = 0
    time_type: Int64 = 0
    position_id: Int64 = 0


class DealReport(Payload):
    """MT5 deal. MT4 has no deals: the EA reports one per open/close of a ticket, with the
    ticket as ``order`` and ``position_id`` and a synthetic ticket (docs/protocol.md)."""

    ticket: Int64
    order: Int64
    position_id: Int64
    symbol: str
    type: Int64
    entry: Int64
    volume: Finite
    price: Finite
    time_ms: TimeMs
    reason: Int64 = 0
    magic: Int64 = 0
    comment: str = ""
    profit: Finite = 0.0
    swap: Finite = 0.0
    commission: Finite = 0.0


class Lookup(Payload):
    """Answer to ``order_get``: every object matching the ticket or client id."""

    orders: list[OrderReport] = []
    positions: list[PositionReport] = []
    history_orders: list[OrderReport] = []
    deals: list[DealReport] = []


class HistoryReport(Payload):
    orders: list[OrderReport] = []
    deals: list[DealReport] = []


class Subscribed(Payload):
    ticks: list[str] = []


class SyncStarted(Payload):
    """Answer to ``sync``: the interval the EA will push at (it may round it)."""

    interval_ms: Int64


class Snapshot(Payload):
    """An account's state at ``time_ms`` (trade-server time) and the history added since the
    previous snapshot of the subscription (the first one: since ``since_ms``)."""

    time_ms: TimeMs
    account: AccountReport
    positions: list[PositionReport] = []
    orders: list[OrderReport] = []
    deals: list[DealReport] = []
    history_orders: list[OrderReport] = []


RESULT_TYPES: dict[type[Request], object] = {
    AccountInfo: AccountReport,
    Symbols: list[SymbolSpec],
    GetTick: Tick,
    Positions: list[PositionReport],
    Orders: list[OrderReport],
    OrderGet: Lookup,
    History: HistoryReport,
    Subscribe: Subscribed,
    Sync: SyncStarted,
    MarketOrder: TradeResult,
    PendingOrder: TradeResult,
    ModifyOrder: TradeResult,
    CancelOrder: TradeResult,
    ModifyPosition: TradeResult,
    ClosePosition: TradeResult,
    CloseBy: TradeResult,
}

# Event names and their payloads.
EVENT_TYPES: dict[str, object] = {
    "tick": Tick,
    "order": OrderReport,  # a pending order was placed, modified, triggered, cancelled or expired
    "deal": DealReport,  # a deal was added to the history (fills, SL/TP, closes)
    "account": AccountReport,
    "snapshot": Snapshot,  # feature "sync": the account's state, every sync interval
}

# What each side may receive.
BridgeInbound = Hello | Auth | Response | Event | Ping | Pong | Bye
TerminalInbound = (
    Welcome
    | Ready
    | Bye
    | Ping
    | Pong
    | AccountInfo
    | Symbols
    | GetTick
    | Positions
    | Orders
    | OrderGet
    | History
    | Subscribe
    | Sync
    | MarketOrder
    | PendingOrder
    | ModifyOrder
    | CancelOrder
    | ModifyPosition
    | ClosePosition
    | CloseBy
)
