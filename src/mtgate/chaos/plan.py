"""What a chaos run does, and when: a pure function of the seed and the order count.

The plan is a sequence of steps, each an operation of one account (an order, a position
change) or a fault (of one account's terminal, of its trade server, or of the bridge). It
never looks at the world: which open position an operation acts on is chosen at run time from
the ``pick`` drawn here, so two runs of one seed issue the same requests and arm the same
faults in the same order while their timing (real sockets, real time) differs.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from mtgate.domain.enums import MarginMode, Platform


class OpKind(enum.StrEnum):
    MARKET = "market"
    PENDING = "pending"
    MODIFY_SLTP = "modify_sltp"
    CLOSE = "close"
    PARTIAL_CLOSE = "partial_close"
    CANCEL = "cancel"


class FaultKind(enum.StrEnum):
    """Every fault the suite knows (what each does: docs/operations.md, "Chaos suite"). A
    kind planned where it cannot apply is reported as not injected
    (:class:`mtgate.chaos.faults.FaultInjector`)."""

    REQUOTE = "requote"
    PRICE_CHANGED = "price_changed"
    OFF_QUOTES = "off_quotes"
    CONTEXT_BUSY = "context_busy"
    TOO_MANY_REQUESTS = "too_many_requests"
    NO_CONNECTION = "no_connection"
    MARKET_CLOSED = "market_closed"
    TRADE_DISABLED = "trade_disabled"
    ALGO_TRADING_OFF = "algo_trading_off"
    SLOW_RESPONSES = "slow_responses"
    TIMEOUT_EXECUTED = "timeout_executed"
    TIMEOUT_NOT_EXECUTED = "timeout_not_executed"
    DROP_BEFORE_EXECUTION = "drop_before_execution"
    DROP_AFTER_EXECUTION = "drop_after_execution"
    ANSWER_LOST = "answer_lost"
    EA_SUCCESS_AS_ERROR = "ea_success_as_error"
    EA_FAILURE_AS_SUCCESS = "ea_failure_as_success"
    TERMINAL_FROZEN = "terminal_frozen"
    TERMINAL_RESTART = "terminal_restart"
    PARTIAL_FILL = "partial_fill"
    BRIDGE_RESTART = "bridge_restart"


@dataclass(frozen=True, slots=True)
class ChaosAccount:
    """One account of the run and the terminals logged into it (first: the primary)."""

    name: str
    login: int
    server: str
    platform: Platform
    margin_mode: MarginMode
    terminals: tuple[str, ...]


ACCOUNTS: tuple[ChaosAccount, ...] = (
    ChaosAccount("mt4", 1001, "Chaos-MT4", Platform.MT4, MarginMode.HEDGING, ("mt4",)),
    ChaosAccount("mt4p", 1002, "Chaos-MT4", Platform.MT4, MarginMode.HEDGING, ("mt4p-a", "mt4p-b")),
    ChaosAccount("mt5h", 2001, "Chaos-MT5", Platform.MT5, MarginMode.HEDGING, ("mt5h",)),
    ChaosAccount(
        "mt5hp", 2002, "Chaos-MT5", Platform.MT5, MarginMode.HEDGING, ("mt5hp-a", "mt5hp-b")
    ),
    ChaosAccount("mt5n", 2003, "Chaos-MT5", Platform.MT5, MarginMode.NETTING, ("mt5n",)),
    ChaosAccount("mt5n2", 2004, "Chaos-MT5", Platform.MT5, MarginMode.NETTING, ("mt5n2",)),
)
"""MT4, MT5 hedging and MT5 netting accounts; two of them on a primary and a standby."""

SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY")
PENDING_KINDS = ("buy_limit", "sell_limit", "buy_stop", "sell_stop")


@dataclass(frozen=True, slots=True)
class Op:
    """One call of the bridge's API for account ``account`` (an index into the accounts)."""

    index: int
    account: int
    kind: OpKind
    client_order_id: str
    symbol: str
    buy: bool
    volume: float
    distance_points: int
    """Pending orders: from the market to the order's price; SL/TP: from the market."""
    pick: int
    """Which of the open positions (or placed orders) the operation acts on, modulo their
    number at run time."""
    pending_kind: str = ""
    expire_s: float = 0.0
    """Pending orders on MT5: expire this long after placement (0: good till cancelled)."""
    pause_ms: int = 0
    """The account's think time before the call."""
    filling: str = ""
    """MT5 market orders: the filling mode asked for ("" the EA's choice; "fok", which the
    run's MT5 symbols refuse 10030)."""
    next_filling: bool = False
    """With ``filling``: the caller allows the "next filling" retry."""
    market_closed_wait_s: float = 0.0
    """Market and pending orders: the caller allows retrying "market closed" this long."""


@dataclass(frozen=True, slots=True)
class Fault:
    """A fault armed before step ``index``. ``account`` None: the bridge itself."""

    index: int
    account: int | None
    kind: FaultKind
    duration_ms: int
    """How long a windowed fault lasts (a restart: how long the terminal stays away)."""
    target: int = 0
    """Terminal faults: which terminal of the account (0 primary, 1 standby), modulo their
    number; next-trade faults ignore it and arm the terminal active at that moment."""


Step = Op | Fault

# Relative weights of the fault kinds; a bridge restart is rare (every terminal reconnects).
FAULT_WEIGHTS: dict[FaultKind, float] = {k: 1.0 for k in FaultKind} | {
    FaultKind.BRIDGE_RESTART: 0.2,
    FaultKind.TERMINAL_RESTART: 1.5,
    FaultKind.DROP_BEFORE_EXECUTION: 1.5,
    FaultKind.DROP_AFTER_EXECUTION: 1.5,
}
OP_WEIGHTS: dict[OpKind, float] = {
    OpKind.MARKET: 5.0,
    OpKind.PENDING: 2.0,
    OpKind.MODIFY_SLTP: 1.5,
    OpKind.CLOSE: 1.0,
    OpKind.PARTIAL_CLOSE: 1.0,
    OpKind.CANCEL: 0.7,
}


@dataclass(frozen=True, slots=True)
class PlanOptions:
    fault_rate: float = 0.12
    """Chance of a fault before each operation (besides, a run of 20 or more operations
    restarts the bridge halfway)."""
    mean_pause_ms: int = 60
    accounts: tuple[ChaosAccount, ...] = ACCOUNTS


def client_order_id(seed: int, index: int) -> str:
    """The client order id of operation ``index``: short, unique in the run, no ``.`` (a
    retry's comment adds ``.<attempt>``)."""
    return f"x{seed % 100_000}-{index}"


def make_plan(orders: int, seed: int, options: PlanOptions | None = None) -> tuple[Step, ...]:
    """``orders`` operations across the accounts with faults among them, drawn from ``seed``."""
    opts = options or PlanOptions()
    if orders < 0:
        raise ValueError("orders must be >= 0")
    rng = random.Random(seed)
    steps: list[Step] = []
    op_kinds, op_weights = list(OP_WEIGHTS), list(OP_WEIGHTS.values())
    fault_kinds, fault_weights = list(FAULT_WEIGHTS), list(FAULT_WEIGHTS.values())
    mt5 = [i for i, a in enumerate(opts.accounts) if a.platform == Platform.MT5]
    for i in range(orders):
        if i == orders // 2 and orders >= 20:
            # Every run restarts the bridge at least once, halfway.
            steps.append(Fault(len(steps), None, FaultKind.BRIDGE_RESTART, 0))
        account = rng.randrange(len(opts.accounts))
        if rng.random() < opts.fault_rate:
            kind = rng.choices(fault_kinds, fault_weights)[0]
            target = account
            if kind == FaultKind.PARTIAL_FILL and mt5 and account not in mt5:
                target = rng.choice(mt5)  # MT4 has no partial fills of market orders
            steps.append(_fault(rng, len(steps), target, kind))
        kind_op = rng.choices(op_kinds, op_weights)[0]
        steps.append(_op(rng, len(steps), seed, i, account, kind_op, opts))
    return tuple(steps)


def _fault(rng: random.Random, index: int, account: int, kind: FaultKind) -> Fault:
    if kind == FaultKind.BRIDGE_RESTART:
        return Fault(index, None, kind, 0)
    duration = {
        FaultKind.TERMINAL_RESTART: rng.randint(200, 1500),
        FaultKind.TERMINAL_FROZEN: rng.randint(300, 1200),
        FaultKind.SLOW_RESPONSES: rng.randint(300, 1500),
        FaultKind.TIMEOUT_EXECUTED: rng.randint(100, 400),
    }.get(kind, rng.randint(200, 1000))
    return Fault(index, account, kind, duration, target=rng.randrange(2))


def _op(
    rng: random.Random,
    index: int,
    seed: int,
    n: int,
    account: int,
    kind: OpKind,
    opts: PlanOptions,
) -> Op:
    spec = opts.accounts[account]
    pending_kind = rng.choice(PENDING_KINDS) if kind == OpKind.PENDING else ""
    expire_s = 0.0
    if pending_kind and spec.platform == Platform.MT5 and rng.random() < 0.3:
        expire_s = rng.uniform(1.0, 6.0)
    filling, next_filling = "", False
    if kind == OpKind.MARKET and spec.platform == Platform.MT5 and rng.random() < 0.15:
        filling, next_filling = "fok", rng.random() < 0.8
    wait_s = 0.0
    if kind in (OpKind.MARKET, OpKind.PENDING) and rng.random() < 0.3:
        wait_s = round(rng.uniform(2.0, 5.0), 1)
    return Op(
        index=index,
        account=account,
        kind=kind,
        client_order_id=client_order_id(seed, n),
        symbol=rng.choice(SYMBOLS),
        buy=rng.random() < 0.5,
        volume=rng.randint(1, 50) / 100,
        distance_points=rng.randint(5, 120) if pending_kind else rng.randint(150, 900),
        pick=rng.randrange(1_000_000),
        pending_kind=pending_kind,
        expire_s=round(expire_s, 3),
        pause_ms=int(rng.expovariate(1 / opts.mean_pause_ms)) if opts.mean_pause_ms else 0,
        filling=filling,
        next_filling=next_filling,
        market_closed_wait_s=wait_s,
    )


def summary(plan: tuple[Step, ...]) -> dict[str, int]:
    """How many steps of each kind (operations by op kind, faults by fault kind)."""
    out: dict[str, int] = {}
    for step in plan:
        key = f"op:{step.kind}" if isinstance(step, Op) else f"fault:{step.kind}"
        out[key] = out.get(key, 0) + 1
    return out
