"""Rejection analytics on every journal backend: window, grouping, rates, filters, limits."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from mtgate.domain.enums import Platform
from mtgate.domain.orders import OrderStatus, Trigger
from mtgate.domain.records import OrderRecord
from mtgate.store import rejection_sql, rejections
from mtgate.store.journal import Journal
from mtgate.store.rejections import RejectionGroup, RejectionReport, rejection_query

from .conftest import T0, Backend, make_order

S, T = OrderStatus, Trigger
MIN = 60_000
HOUR = 3_600_000
A = (5_001_234, "Broker-Demo")
B = (7_001, "Other-Live")
SINCE, UNTIL = T0, T0 + 2 * HOUR


async def _rejected(
    journal: Journal, at_ms: int, code: int, account: tuple[int, str] = A, **fields: Any
) -> OrderRecord:
    order = make_order(
        placed_at_ms=at_ms,
        updated_at_ms=at_ms + 1,
        account_login=account[0],
        account_server=account[1],
        **fields,
    )
    await journal.record_submitted(order)
    order.status, order.rejection_code = S.REJECTED, code
    order.rejection_name, order.rejection_reason = f"CODE_{code}", "refused by the server"
    order.updated_at_ms = at_ms + 5
    await journal.record_transition(order, S.SUBMITTED, T.REJECT, f"{code}")
    return order


async def _refused(
    journal: Journal, at_ms: int, rule: str, account: tuple[int, str] = A, **fields: Any
) -> None:
    order = make_order(
        placed_at_ms=at_ms,
        updated_at_ms=at_ms,
        account_login=account[0],
        account_server=account[1],
        status=S.REJECTED,
        rejection_name=f"bridge:{rule}",
        rejection_reason="volume: not a multiple of the step",
        **fields,
    )
    await journal.record_refused(order)


async def _filled(
    journal: Journal, at_ms: int, account: tuple[int, str] = A, **fields: Any
) -> None:
    order = make_order(
        placed_at_ms=at_ms,
        updated_at_ms=at_ms + 1,
        account_login=account[0],
        account_server=account[1],
        **fields,
    )
    await journal.record_submitted(order)
    order.status, order.updated_at_ms = S.FILLED, at_ms + 3
    await journal.record_transition(order, S.SUBMITTED, T.FILL, "deal")


@pytest.fixture
async def seeded(journal: Journal) -> Journal:
    """Account A (MT5): two 10019 and a filled EURUSD in the first hour, one 10006 GBPUSD in
    the second, one order still unknown. Account B (MT4): a refusal of the bridge's, a 134,
    a fill. Outside [SINCE, UNTIL): a rejection just before and one at UNTIL itself."""
    await _rejected(journal, T0 + 1 * MIN, 10019)
    await _rejected(journal, T0 + 2 * MIN, 10019)
    await _filled(journal, T0 + 3 * MIN)
    await _rejected(journal, T0 + 61 * MIN, 10006, symbol="GBPUSD")
    unknown = make_order(placed_at_ms=T0 + 10 * MIN, updated_at_ms=T0 + 10 * MIN)
    await journal.record_submitted(unknown)
    unknown.status, unknown.rejection_code = S.UNKNOWN, 10012  # the code of a lost answer
    await journal.record_transition(unknown, S.SUBMITTED, T.LOSE)
    await _refused(journal, T0 + 5 * MIN, "volume_step", B, platform=Platform.MT4)
    await _rejected(journal, T0 + 6 * MIN, 134, B, platform=Platform.MT4)
    await _filled(journal, T0 + 7 * MIN, B, platform=Platform.MT4)
    await _rejected(journal, T0 - 1, 10019)
    await _rejected(journal, UNTIL, 10019)
    return journal


async def _report(journal: Journal, **fields: Any) -> RejectionReport:
    fields.setdefault("since_ms", SINCE)
    fields.setdefault("until_ms", UNTIL)
    return await journal.rejections(rejection_query(**fields))


def _key(group: RejectionGroup) -> tuple[Any, ...]:
    return (group.account, group.symbol, group.bucket_ms, group.platform, group.code, group.name)


async def test_by_code_counts_each_code_against_every_order_of_the_window(
    seeded: Journal,
) -> None:
    report = await _report(seeded, by="code")
    assert (report.orders, report.rejections, report.truncated) == (8, 5, False)
    assert report.rate == pytest.approx(5 / 8)
    assert report.groups == [
        RejectionGroup(
            2,
            8,
            T0 + 1 * MIN,
            T0 + 2 * MIN,
            source="terminal",
            platform=Platform.MT5,
            code=10019,
            name="TRADE_RETCODE_NO_MONEY",
            classification="rejected",
        ),
        RejectionGroup(
            1,
            8,
            T0 + 6 * MIN,
            T0 + 6 * MIN,
            source="terminal",
            platform=Platform.MT4,
            code=134,
            name="ERR_NOT_ENOUGH_MONEY",
            classification="rejected",
        ),
        RejectionGroup(
            1,
            8,
            T0 + 61 * MIN,
            T0 + 61 * MIN,
            source="terminal",
            platform=Platform.MT5,
            code=10006,
            name="TRADE_RETCODE_REJECT",
            classification="rejected",
        ),
        RejectionGroup(
            1,
            8,
            T0 + 5 * MIN,
            T0 + 5 * MIN,
            source="bridge",
            name="bridge:volume_step",
            classification="rejected",
        ),
    ]
    assert report.groups[0].rate == pytest.approx(2 / 8)


async def test_by_account_rates_are_of_each_accounts_own_orders(seeded: Journal) -> None:
    report = await _report(seeded, by="account")
    found = [(g.account, g.rejections, g.orders) for g in report.groups]
    assert found == [("5001234@Broker-Demo", 3, 5), ("7001@Other-Live", 2, 3)]
    assert [g.code for g in report.groups] == [None, None]
    assert report.groups[1].rate == pytest.approx(2 / 3)


async def test_by_code_and_account_shares_the_accounts_denominator(seeded: Journal) -> None:
    report = await _report(seeded, by=["account", "code"])
    found = [(g.account, g.code, g.name, g.rejections, g.orders) for g in report.groups]
    # Most rejections first, then by the keys in order (login 7001 before 5001234; a code's
    # platform before a refusal's none), alike on every backend.
    assert found == [
        ("5001234@Broker-Demo", 10019, "TRADE_RETCODE_NO_MONEY", 2, 5),
        ("7001@Other-Live", 134, "ERR_NOT_ENOUGH_MONEY", 1, 3),
        ("7001@Other-Live", None, "bridge:volume_step", 1, 3),
        ("5001234@Broker-Demo", 10006, "TRADE_RETCODE_REJECT", 1, 5),
    ]


async def test_by_symbol(seeded: Journal) -> None:
    report = await _report(seeded, by="symbol")
    assert [(g.symbol, g.rejections, g.orders) for g in report.groups] == [
        ("EURUSD", 4, 7),
        ("GBPUSD", 1, 1),
    ]


async def test_by_hour_buckets_are_utc_hours(seeded: Journal) -> None:
    ten = T0 - T0 % HOUR
    assert ten == 1_767_780_000_000  # 10:00:00.000 UTC
    report = await _report(seeded, by="hour")
    assert [(g.bucket_ms, g.rejections, g.orders) for g in report.groups] == [
        (ten, 4, 7),
        (ten + HOUR, 1, 1),
    ]
    minutes = await _report(seeded, by="minute,account", account_login=B[0], account_server=B[1])
    assert [(g.bucket_ms, g.account, g.rejections, g.orders) for g in minutes.groups] == [
        (ten + 5 * MIN, "7001@Other-Live", 1, 1),
        (ten + 6 * MIN, "7001@Other-Live", 1, 1),
    ]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"account_login": B[0], "account_server": B[1]}, (3, 2, {134, None})),
        ({"account_login": B[0], "account_server": "Broker-Demo"}, (0, 0, set())),
        ({"symbol": "GBPUSD"}, (1, 1, {10006})),
        ({"platform": "mt4"}, (3, 2, {134, None})),
        ({"platform": Platform.MT5, "symbol": "EURUSD"}, (4, 2, {10019})),
    ],
)
async def test_filters_narrow_both_counts(
    seeded: Journal, filters: dict[str, Any], expected: tuple[int, int, set[int | None]]
) -> None:
    report = await _report(seeded, by="code", **filters)
    assert (report.orders, report.rejections, {g.code for g in report.groups}) == expected
    assert all(g.orders == report.orders for g in report.groups)


async def test_the_window_is_half_open_on_placement_time(seeded: Journal) -> None:
    wider = await _report(seeded, since_ms=T0 - 1, until_ms=UNTIL + 1)
    assert (wider.orders, wider.rejections) == (10, 7)
    inside = await _report(seeded, since_ms=T0 + 2 * MIN, until_ms=T0 + 6 * MIN)
    # 2 min (10019), 3 (fill), 5 (refusal); not 6 (134): the end is excluded.
    assert (inside.orders, inside.rejections) == (3, 2)
    assert {g.name for g in inside.groups} == {"TRADE_RETCODE_NO_MONEY", "bridge:volume_step"}


async def test_a_window_without_orders_is_empty(seeded: Journal) -> None:
    report = await _report(seeded, since_ms=UNTIL + HOUR, until_ms=UNTIL + 2 * HOUR)
    assert (report.orders, report.rejections, report.groups, report.rate) == (0, 0, [], 0.0)


async def test_limit_keeps_the_most_rejected_groups_and_says_so(seeded: Journal) -> None:
    report = await _report(seeded, by="code", limit=1)
    assert [g.code for g in report.groups] == [10019]
    assert report.truncated
    exact = await _report(seeded, by="code", limit=4)
    assert len(exact.groups) == 4 and not exact.truncated


async def test_an_unlisted_code_keeps_the_name_the_terminal_gave(journal: Journal) -> None:
    await _rejected(journal, T0 + MIN, 10999)
    report = await _report(journal)
    assert [(g.code, g.name, g.classification) for g in report.groups] == [
        (10999, "CODE_10999", "unknown")
    ]


async def test_a_rejection_reported_without_a_code(journal: Journal) -> None:
    """A placed order whose activation the terminal reports rejected has no code."""
    order = make_order(placed_at_ms=T0 + MIN, updated_at_ms=T0 + MIN)
    await journal.record_submitted(order)
    order.status = S.REJECTED
    await journal.record_transition(order, S.SUBMITTED, T.REJECT, "terminal reports REJECTED")
    report = await _report(journal)
    assert [(g.source, g.code, g.name, g.classification) for g in report.groups] == [
        ("terminal", None, None, None)
    ]


async def test_counts_are_aggregated_in_sql_for_many_orders(journal: Journal) -> None:
    """300 orders, 200 rejected over 40 symbols: exact counts, and 5 groups in memory."""
    for i in range(300):
        at = T0 + i * 1000
        if i % 3 == 2:
            await _filled(journal, at, symbol=f"SYM{i % 40:02d}")
        else:
            await _rejected(journal, at, 10019 if i % 2 else 10006, symbol=f"SYM{i % 40:02d}")
    report = await _report(journal, by="symbol", limit=5)
    assert (report.orders, report.rejections) == (300, 200)
    assert len(report.groups) == 5 and report.truncated
    everything = await _report(journal, by="symbol", limit=40)
    assert sum(g.rejections for g in everything.groups) == 200
    assert sum(g.orders for g in everything.groups) == 300


async def test_a_write_just_made_is_counted(journal: Journal) -> None:
    """The SQLite journal writes behind; the analytics flush first, like every read."""
    await _rejected(journal, T0 + MIN, 10019)
    report = await _report(journal)
    assert report.rejections == 1


async def test_as_dict_is_json_ready(seeded: Journal) -> None:
    import json

    report = await _report(seeded, by="hour,code", limit=2)
    data = json.loads(json.dumps(report.as_dict()))
    assert data["since"] == "2026-01-07T10:00:00.123Z"
    assert (data["orders"], data["rejections"], data["truncated"]) == (8, 5, True)
    first = data["groups"][0]
    assert (first["bucket"], first["code"], first["platform"]) == (
        "2026-01-07T10:00:00.000Z",
        10019,
        "mt5",
    )
    assert first["rate"] == pytest.approx(2 / 7)
    assert first["first_seen"] == "2026-01-07T10:01:00.123Z"


async def test_the_read_engine_reads_without_writing(seeded: Journal, backend: Backend) -> None:
    """What the CLI uses: no migration, SQLite opened read-only. It sees what the journal has
    written (the SQLite journal writes behind its intents within ~10 ms: a read flushes)."""
    await seeded.list_orders(limit=1)
    engine = rejection_sql.read_engine(backend.url)
    try:
        query = rejection_query(since_ms=SINCE, until_ms=UNTIL, by="account")
        report = rejection_sql.read(engine, query)
        assert [(g.account, g.rejections) for g in report.groups] == [
            ("5001234@Broker-Demo", 3),
            ("7001@Other-Live", 2),
        ]
        if backend.url.startswith("sqlite"):
            with pytest.raises(Exception, match="readonly"), engine.begin() as conn:
                conn.exec_driver_sql("DELETE FROM order_events")
    finally:
        engine.dispose()


def test_group_fields_are_all_in_the_dict() -> None:
    group = RejectionGroup(1, 2, T0, T0, bucket_ms=T0 - T0 % HOUR)
    data = rejections._group_dict(group)
    assert {f.name for f in dataclasses.fields(group)} <= set(data)
    assert data["rate"] == 0.5


async def test_the_cli_reports_the_window_as_json_and_as_a_table(
    seeded: Journal, backend: Backend
) -> None:
    """``mtgate rejections``: the same report as the journal's, from the store URL."""
    from typer.testing import CliRunner

    from mtgate.cli import app

    await seeded.list_orders(limit=1)  # the SQLite journal's queue is written
    window = ["--since", "2026-01-07T10:00:00.123Z", "--until", "2026-01-07T12:00:00.123Z"]
    runner = CliRunner()
    found = runner.invoke(
        app, ["rejections", *window, "--by", "account", "--json", "--store", backend.url]
    )
    assert found.exit_code == 0, found.output
    data = json.loads(found.output)
    expected = await _report(seeded, by="account")
    assert (data["orders"], data["rejections"]) == (expected.orders, expected.rejections)
    assert [g["account"] for g in data["groups"]] == ["5001234@Broker-Demo", "7001@Other-Live"]
    table = runner.invoke(
        app,
        ["rejections", *window, "--by", "code,hour", "--store", backend.url],
        env={"COLUMNS": "200"},
    )
    assert table.exit_code == 0, table.output
    assert "10019" in table.output and "TRADE_RETCODE_NO_MONEY" in table.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "since 'yesterday': expected a duration"),
        (["--by", "colour"], "by 'colour': expected one or more of"),
        (["--account", "12x@srv"], "expected login@server"),
        (["--limit", "0"], "limit: 0 is not in"),
        (["--store", "sqlite:////nonexistent/mtgate.db"], "no journal at"),
    ],
)
def test_the_cli_names_what_is_wrong(args: list[str], message: str, tmp_path: Any) -> None:
    from typer.testing import CliRunner

    from mtgate.cli import app

    args = args if "--store" in args else [*args, "--store", f"sqlite:///{tmp_path}/none.db"]
    found = CliRunner().invoke(app, ["rejections", *args])
    assert found.exit_code == 2
    assert message in found.output
