"""The code registries: every MT4 error and MT5 retcode classified (reference §2, §3.7)."""

from __future__ import annotations

import pytest

from mtgate.domain.codes import MT4_CODES, MT5_CODES, Classification, is_ok, lookup
from mtgate.domain.enums import Platform

UNKNOWN_OUTCOME = {(Platform.MT4, c) for c in (128, 142, 143, 144)} | {
    (Platform.MT5, c) for c in (10011, 10012, 10031)
}
RETRY_NOW = {(Platform.MT4, c) for c in (129, 135, 136, 138)} | {
    (Platform.MT5, c) for c in (10004, 10020, 10021)
}
SUCCESS = {
    (Platform.MT4, 0),
    (Platform.MT4, 1),
    (Platform.MT5, 10008),
    (Platform.MT5, 10009),
    (Platform.MT5, 10010),
    (Platform.MT5, 10025),
}
ALL = [(Platform.MT4, c) for c in MT4_CODES] + [(Platform.MT5, c) for c in MT5_CODES]


@pytest.mark.parametrize(("platform", "code"), ALL)
def test_every_code_is_classified_as_the_reference_says(platform: Platform, code: int) -> None:
    entry = lookup(platform, code)
    assert entry.code == code and entry.platform == platform
    if (platform, code) in UNKNOWN_OUTCOME:
        assert entry.classification == Classification.UNKNOWN
    elif (platform, code) in SUCCESS:
        assert entry.classification == Classification.OK
    else:
        assert entry.classification in (Classification.REJECTED, Classification.RETRYABLE)
    assert entry.retry_now == ((platform, code) in RETRY_NOW)
    prefix = "ERR_" if platform == Platform.MT4 else "TRADE_RETCODE_"
    assert entry.name.startswith(prefix)


def test_the_tables_hold_every_documented_code() -> None:
    assert set(MT4_CODES) >= {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 64, 65, *range(128, 151)}
    assert set(MT5_CODES) == {*range(10004, 10047)} - {10005, 10037}


@pytest.mark.parametrize(
    ("code", "classification"),
    [
        (-1, Classification.REJECTED),
        (-2, Classification.REJECTED),
        (-3, Classification.RETRYABLE),
        (-4, Classification.REJECTED),
        (-5, Classification.REJECTED),
    ],
)
def test_protocol_codes_mean_nothing_was_executed(
    code: int, classification: Classification
) -> None:
    for platform in Platform:
        assert lookup(platform, code).classification == classification


def test_an_unlisted_code_is_never_taken_for_harmless() -> None:
    entry = lookup(Platform.MT5, 10099)
    assert entry.classification == Classification.UNKNOWN
    assert entry.name == "UNLISTED_10099"


@pytest.mark.parametrize("platform", list(Platform))
def test_the_success_set_reads_as_the_registry_does(platform: Platform) -> None:
    """``is_ok`` answers every answer on the order path; it must say what ``lookup`` says."""
    codes = [*range(-20, 200), *range(4000, 4300), *range(10000, 10100), 2**31 - 1]
    for code in codes:
        assert is_ok(platform, code) == (
            lookup(platform, code).classification == Classification.OK
        ), code
