"""The order path's doubt test agrees with the full list of orders in doubt (DESIGN §4)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mtgate.domain.clock import ManualClock
from mtgate.domain.enums import OrderType, Platform
from mtgate.domain.orders import OrderStatus
from mtgate.domain.records import OrderRecord
from mtgate.execution.book import OrderBook
from mtgate.sessions.session import AccountKey

TERMINALS = ("t1", "t2", "t3")
ACCOUNTS = (AccountKey(1, "S"), AccountKey(2, "S"))


def _record(n: int, account: AccountKey, terminal: str, status: OrderStatus) -> OrderRecord:
    return OrderRecord(
        order_id=f"00000000-0000-4000-8000-{n:012d}",
        client_order_id=f"c{n}",
        account_login=account.login,
        account_server=account.server,
        terminal_id=terminal,
        platform=Platform.MT5,
        symbol="EURUSD",
        order_type=OrderType.BUY,
        volume=0.01,
        magic=1,
        comment=f"mg:c{n}",
        placed_at_ms=0,
        status=status,
    )


@given(
    st.lists(
        st.tuples(
            st.sampled_from(ACCOUNTS),
            st.sampled_from(TERMINALS),
            st.sampled_from([OrderStatus.SUBMITTED, OrderStatus.UNKNOWN, OrderStatus.PLACED]),
        ),
        max_size=12,
    )
)
def test_doubt_elsewhere_is_whether_in_doubt_lists_any(
    orders: list[tuple[AccountKey, str, OrderStatus]],
) -> None:
    book = OrderBook(journal=None, clock=ManualClock())  # type: ignore[arg-type]
    for n, (account, terminal, status) in enumerate(orders):
        book.track(_record(n, account, terminal, status))
    for account in ACCOUNTS:
        for terminal in TERMINALS:
            listed = book.in_doubt(account, other_than=terminal)
            assert book.doubt_elsewhere(account, other_than=terminal) == bool(listed)
