"""Windows, groupings and filters of the rejection analytics, checked before any SQL runs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtgate.domain.enums import Platform
from mtgate.store.rejections import (
    MAX_MS,
    RejectionQueryError,
    parse_by,
    parse_time,
    rejection_query,
)

NOW = 1_767_780_000_123  # 2026-01-07 10:00:00.123 UTC


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1h", NOW - 3_600_000),
        ("30m", NOW - 1_800_000),
        ("2d", NOW - 2 * 86_400_000),
        ("45s", NOW - 45_000),
        ("1w", NOW - 7 * 86_400_000),
        (" 15 m ", NOW - 900_000),
        ("now", NOW),
        ("2026-01-07T09:00:00Z", NOW - 123 - 3_600_000),
        ("2026-01-07T09:00:00", NOW - 123 - 3_600_000),  # no offset: UTC
        ("2026-01-07T11:00:00+02:00", NOW - 123 - 3_600_000),
        ("2026-01-07", NOW - 123 - 10 * 3_600_000),
    ],
)
def test_times_parse(text: str, expected: int) -> None:
    assert parse_time(text, NOW) == expected


@pytest.mark.parametrize("text", ["", "1x", "h", "-1h", "1.5h", "yesterday", "2026-13-01", "٣h"])
def test_bad_times_name_the_option_and_what_is_expected(text: str) -> None:
    with pytest.raises(RejectionQueryError, match=r"--since .*expected a duration such as 30m"):
        parse_time(text, NOW, option="--since")


@pytest.mark.parametrize("text", ["999999999999w", "1969-12-31T23:59:59Z"])
def test_times_before_1970_are_refused(text: str) -> None:
    with pytest.raises(RejectionQueryError, match="outside 1970-01-01"):
        parse_time(text, NOW)


@given(st.text(max_size=300))
def test_any_text_parses_or_is_refused_clearly(text: str) -> None:
    error: RejectionQueryError | None = None
    try:
        at = parse_time(text, NOW)
    except RejectionQueryError as exc:
        error = exc
    if error is None:
        assert 0 <= at <= MAX_MS
    else:
        assert len(str(error)) < 400  # a huge input is not echoed whole


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("code", ("code",)),
        ("code,account", ("code", "account")),
        (" Symbol , hour ", ("symbol", "hour")),
        (["account", "account", "day"], ("account", "day")),
    ],
)
def test_groupings(value: str | list[str], expected: tuple[str, ...]) -> None:
    assert parse_by(value) == expected


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("", "expected one or more of code, account, symbol, minute, hour, day"),
        ("code,week", "by 'week'"),
        ("hour,minute", "at most one time bucket"),
        ([], "name at least one"),
    ],
)
def test_bad_groupings(value: str | list[str], match: str) -> None:
    with pytest.raises(RejectionQueryError, match=match):
        parse_by(value)


def test_a_query_is_checked_field_by_field() -> None:
    q = rejection_query(since_ms=NOW - 1, until_ms=NOW, by="account", platform="mt4", limit=5)
    assert (q.by, q.platform, q.limit) == (("account",), Platform.MT4, 5)
    with pytest.raises(RejectionQueryError, match="must be before until"):
        rejection_query(since_ms=NOW, until_ms=NOW)
    with pytest.raises(RejectionQueryError, match="limit"):
        rejection_query(since_ms=0, until_ms=NOW, limit=0)
    with pytest.raises(RejectionQueryError, match="platform 'mt6'"):
        rejection_query(since_ms=0, until_ms=NOW, platform="mt6")
    with pytest.raises(RejectionQueryError, match="both the login and the server"):
        rejection_query(since_ms=0, until_ms=NOW, account_login=1)
    with pytest.raises(RejectionQueryError, match="since: -1 ms"):
        rejection_query(since_ms=-1, until_ms=NOW)
