"""Wire messages of protocol v1, as msgspec structs.

Every frame is one JSON object whose ``type`` field names the message. Requests are tagged with
their operation name and carry a per-session ``id``; the answer is a ``res`` with the same id.
Unknown fields are refused (``forbid_unknown_fields``): a field one side does not understand
must never be dropped silently from an order. New operations and fields arrive as new message
types, announced in the handshake's ``features`` (docs/protocol.md §Versioning).
"""

from __future__ import annotations

import msgspec

from mtgate.domain.symbols import SymbolSpec

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 1 << 20


class Message(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, omit_defaults=True):
    """Base of every frame."""


# --- handshake ------------------------------------------------------------------------------


class Hello(Message, tag="hello"):
    """EA → bridge, first frame. ``nonce``: 32 hex chars from a CSPRNG."""

    v: int
    platform: str
    build: int
    login: int
    server: str
    company: str
    currency: str
    leverage: int
    margin_mode: int
    terminal_id: str
    ea_version: str
    nonce: str
    features: list[str] = []


class Welcome(Message, tag="welcome"):
    """Bridge → EA: its own nonce and its proof of the terminal key."""

    v: int
    nonce: str
    proof: str
    session: str
    heartbeat_ms: int
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
    t_ms: int


class Pong(Message, tag="pong"):
    t_ms: int


# --- requests (bridge → EA) -----------------------------------------------------------------


class Request(Message):
    id: int


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

    ticket: int = 0
    client_id: str = ""


class History(Request, tag="history"):
    """History orders and deals with a time in ``[since_ms, until_ms]`` (0: up to now)."""

    since_ms: int
    until_ms: int = 0


class Subscribe(Request, tag="subscribe"):
    """Push ``tick`` events for ``ticks`` (symbol names). Replaces the previous subscription."""

    ticks: list[str] = []


class MarketOrder(Request, tag="market_order"):
    """Buy (``order_type`` 0) or sell (1) at market. ``price`` 0: the current Ask/Bid.
    ``deviation`` in points. SL/TP 0: none."""

    symbol: str
    order_type: int
    volume: float
    magic: int
    comment: str
    price: float = 0.0
    deviation: int = 0
    sl: float = 0.0
    tp: float = 0.0
    filling: int = -1


class PendingOrder(Request, tag="pending_order"):
    """``order_type`` 2..7. ``stoplimit``: the limit price of a stop-limit order (MT5 only).
    ``expiration_ms`` 0: good till cancelled."""

    symbol: str
    order_type: int
    volume: float
    price: float
    magic: int
    comment: str
    stoplimit: float = 0.0
    sl: float = 0.0
    tp: float = 0.0
    expiration_ms: int = 0
    time_type: int = 0
    filling: int = -1


class ModifyOrder(Request, tag="modify_order"):
    """New price, stop-limit price, SL, TP and expiration of a pending order (all values are
    the order's new full state, as in OrderModify / TRADE_ACTION_MODIFY)."""

    ticket: int
    price: float
    sl: float = 0.0
    tp: float = 0.0
    stoplimit: float = 0.0
    expiration_ms: int = 0
    time_type: int = 0


class CancelOrder(Request, tag="cancel_order"):
    ticket: int


# --- position operations (feature "positions", docs/protocol.md §5.2) ------------------------


class ModifyPosition(Request, tag="modify_position"):
    """New SL and TP of an open position (MT5 TRADE_ACTION_SLTP / MT4 OrderModify on a
    market order). Both values are the position's new full state: 0 removes a level.
    ``ticket``: the position ticket (MT4: the order ticket)."""

    ticket: int
    sl: float = 0.0
    tp: float = 0.0


class ClosePosition(Request, tag="close_position"):
    """Close all (``volume`` 0) or part of a position at market (MT5 TRADE_ACTION_DEAL with
    ``position``; netting: the opposite deal on the symbol; MT4 OrderClose). ``price`` 0: the
    current Bid (buy) / Ask (sell). ``deviation`` in points. ``comment``: MT5 close order's
    comment (MT4 OrderClose takes none)."""

    ticket: int
    volume: float = 0.0
    price: float = 0.0
    deviation: int = 0
    comment: str = ""


class CloseBy(Request, tag="close_by"):
    """Close a position by an opposite one on the same symbol (MT4 OrderCloseBy / MT5
    TRADE_ACTION_CLOSE_BY with ``position`` = ``ticket``, ``position_by`` = ``opposite``;
    hedging accounts only)."""

    ticket: int
    opposite: int


# --- account synchronization (feature "sync", docs/protocol.md §5.3) ------------------------


class Sync(Request, tag="sync"):
    """Push a ``snapshot`` event now and then every ``interval_ms`` (0 stops the pushes).

    The first snapshot carries the history (deals and history orders) from ``since_ms``; each
    later one carries only the history added since the previous snapshot. Snapshots are built
    between trades and never delay one (docs/protocol.md §5.3). Replaces the previous
    subscription; ends with the session."""

    interval_ms: int
    since_ms: int = 0


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

# --- responses and events (EA → bridge) -----------------------------------------------------


class Error(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """``code`` is the platform's own: MT4 ``GetLastError()``, MT5 ``retcode``. ``bid``/``ask``
    carry the new prices of a requote. Protocol-level errors use negative codes."""

    code: int
    name: str
    message: str
    bid: float = 0.0
    ask: float = 0.0


class Response(Message, tag="res"):
    """``ok: true`` carries ``result``; ``ok: false`` carries ``error``; never both."""

    id: int
    ok: bool
    result: msgspec.Raw = msgspec.Raw(b"null")
    error: Error | None = None

    def __post_init__(self) -> None:
        if self.ok == (self.error is not None):
            raise ValueError("a response has an error exactly when ok is false")


class Event(Message, tag="evt"):
    """``seq`` starts at 1 after ``ready`` and grows by one; a gap means: resync now."""

    seq: int
    name: str
    data: msgspec.Raw


# --- result and report payloads -------------------------------------------------------------


class Payload(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, gc=False):
    pass


class TradeResult(Payload):
    """``code``: MT4 0 / MT5 10009 DONE or 10008 PLACED. ``order``: the order ticket (MT4: the
    ticket); ``deal``/``position``: MT5 deal ticket and position id (0 when none)."""

    code: int
    order: int
    volume: float
    price: float
    bid: float
    ask: float
    time_ms: int
    deal: int = 0
    position: int = 0
    comment: str = ""
    remainder: int = 0
    """``close_position`` / ``close_by`` only (feature "positions"): the ticket of the open
    position holding what is left of the closed one(s), 0 when nothing is left. MT4: a new
    ticket (docs/protocol.md §10); MT5: the position's own ticket. Never set by the v1 base
    operations."""


class Tick(Payload):
    symbol: str
    bid: float
    ask: float
    time_ms: int


class AccountReport(Payload):
    login: int
    server: str
    currency: str
    leverage: int
    margin_mode: int
    balance: float
    credit: float
    profit: float
    equity: float
    margin: float
    margin_free: float
    margin_level: float
    margin_so_call: float
    margin_so_so: float
    trade_allowed: bool
    trade_expert: bool
    limit_orders: int = 0
    company: str = ""
    name: str = ""


class PositionReport(Payload):
    """MT4: an open market order (``identifier`` = ticket). Profit excludes swap/commission."""

    ticket: int
    identifier: int
    symbol: str
    type: int
    volume: float
    price_open: float
    price_current: float
    time_ms: int
    magic: int = 0
    comment: str = ""
    sl: float = 0.0
    tp: float = 0.0
    profit: float = 0.0
    swap: float = 0.0
    commission: float = 0.0
    time_update_ms: int = 0


class OrderReport(Payload):
    """A pending order, or an order in history (``state`` = ORDER_STATE_*)."""

    ticket: int
    symbol: str
    type: int
    state: int
    volume_initial: float
    volume_current: float
    price_open: float
    time_setup_ms: int
    magic: int = 0
    comment: str = ""
    stoplimit: float = 0.0
    sl: float = 0.0
    tp: float = 0.0
    price_current: float = 0.0
    time_done_ms: int = 0
    expiration_ms: int = 0
    time_type: int = 0
    position_id: int = 0


class DealReport(Payload):
    """MT5 deal. MT4 has no deals: the EA reports one per open/close of a ticket, with the
    ticket as ``order`` and ``position_id`` and a synthetic ticket (docs/protocol.md)."""

    ticket: int
    order: int
    position_id: int
    symbol: str
    type: int
    entry: int
    volume: float
    price: float
    time_ms: int
    reason: int = 0
    magic: int = 0
    comment: str = ""
    profit: float = 0.0
    swap: float = 0.0
    commission: float = 0.0


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

    interval_ms: int


class Snapshot(Payload):
    """An account's state at ``time_ms`` (trade-server time) and the history added since the
    previous snapshot of the subscription (the first one: since ``since_ms``)."""

    time_ms: int
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
