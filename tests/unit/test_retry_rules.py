"""Retry strategies per code: every code of both registries classified, each default
strategy, the deviation never widened, backoff bounds, opt-ins, limits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtgate.domain import retry as r
from mtgate.domain.codes import MT4_CODES, MT5_CODES, PROTOCOL_CODES, Classification
from mtgate.domain.enums import Platform
from mtgate.domain.retry import (
    DEFAULT_STRATEGIES,
    RetryOptions,
    RetryPolicy,
    Step,
    Strategy,
)

S = Strategy
ALL_CODES = [(Platform.MT4, c) for c in MT4_CODES] + [(Platform.MT5, c) for c in MT5_CODES]

EXPECTED: dict[tuple[Platform, int], Strategy] = {
    # Reference §2: RP.
    (Platform.MT4, 129): S.FRESH_PRICE,
    (Platform.MT4, 135): S.FRESH_PRICE,
    (Platform.MT4, 136): S.FRESH_PRICE,
    (Platform.MT4, 138): S.FRESH_PRICE,
    # §2: RL.
    (Platform.MT4, 4): S.BACKOFF,
    (Platform.MT4, 6): S.BACKOFF,
    (Platform.MT4, 8): S.BACKOFF,
    (Platform.MT4, 137): S.BACKOFF,
    (Platform.MT4, 141): S.BACKOFF,
    (Platform.MT4, 146): S.BACKOFF,
    (Platform.MT4, 132): S.MARKET_CLOSED,
    (Platform.MT4, 134): S.REDUCE_VOLUME,
    (Platform.MT4, 131): S.ROUND_VOLUME,
    (Platform.MT4, 4109): S.ALTERNATIVE,
    # §3.7: RP, RL.
    (Platform.MT5, 10004): S.FRESH_PRICE,
    (Platform.MT5, 10020): S.FRESH_PRICE,
    (Platform.MT5, 10021): S.FRESH_PRICE,
    (Platform.MT5, 10024): S.BACKOFF,
    (Platform.MT5, 10028): S.BACKOFF,
    (Platform.MT5, 10029): S.BACKOFF,
    (Platform.MT5, 10018): S.MARKET_CLOSED,
    (Platform.MT5, 10019): S.REDUCE_VOLUME,
    (Platform.MT5, 10014): S.ROUND_VOLUME,
    (Platform.MT5, 10030): S.NEXT_FILLING,
    (Platform.MT5, 10027): S.ALTERNATIVE,
}


@pytest.mark.parametrize(("platform", "code"), ALL_CODES)
def test_each_code_has_its_default_strategy(platform: Platform, code: int) -> None:
    policy = RetryPolicy()
    assert policy.strategy(platform, code) is EXPECTED.get((platform, code), S.NONE)


@pytest.mark.parametrize(("platform", "code"), ALL_CODES)
def test_only_codes_that_prove_nothing_executed_are_retried_by_code(
    platform: Platform, code: int
) -> None:
    """An outcome-unknown or success code is never resent by its code: resolution decides."""
    table = MT4_CODES if platform is Platform.MT4 else MT5_CODES
    strategy = RetryPolicy().strategy(platform, code)
    if table[code].classification in (Classification.UNKNOWN, Classification.OK):
        assert strategy is S.NONE
        assert r.strategy_allowed(platform, code, S.BACKOFF) is not None
    if strategy is not S.NONE:
        assert table[code].classification in (Classification.RETRYABLE, Classification.REJECTED)
        assert r.strategy_allowed(platform, code, strategy) is None


@pytest.mark.parametrize("code", sorted(PROTOCOL_CODES))
def test_protocol_refusals(code: int) -> None:
    expected = S.BACKOFF if code in (-3, -6) else S.NONE
    for platform in Platform:
        assert RetryPolicy().strategy(platform, code) is expected


def _decide(code: int, platform: Platform = Platform.MT5, **kw: object) -> r.Decision:
    args: dict[str, object] = {
        "attempt": 1,
        "fresh_price_retries": 0,
        "age_s": 0.0,
        "jitter": 0.5,
    }
    policy = kw.pop("policy", RetryPolicy())
    options = kw.pop("options", RetryOptions())
    args.update(kw)
    return r.decide(policy, options, platform, code, **args)  # type: ignore[arg-type]


def test_fresh_price_is_immediate_and_bounded() -> None:
    assert _decide(10004) == r.Decision(Step.RESEND, S.FRESH_PRICE, 0.0)
    assert _decide(10004, fresh_price_retries=3).step is Step.STOP
    assert _decide(10004, attempt=5).step is Step.STOP  # max_attempts in all


def test_backoff_doubles_to_the_cap_with_full_jitter() -> None:
    policy = RetryPolicy(backoff_base_ms=100, backoff_cap_ms=1000)
    assert _decide(10024, policy=policy, jitter=0.5).delay_s == pytest.approx(0.05)
    assert _decide(10024, policy=policy, attempt=3, jitter=0.5).delay_s == pytest.approx(0.2)
    assert _decide(10024, policy=policy, attempt=4, jitter=0.999).delay_s <= 1.0


def test_opt_in_strategies_need_the_caller() -> None:
    for code in (10018, 10019, 10014, 10030):
        assert _decide(code).step is Step.STOP
    opted = RetryOptions(
        market_closed_wait_s=60, min_volume=0.01, round_volume=True, next_filling=True
    )
    for code in (10019, 10014, 10030):
        assert _decide(code, options=opted).step is Step.RESEND
    closed = _decide(10018, options=opted, jitter=0.0)
    assert (closed.step, closed.delay_s) == (Step.RESEND, 1.0)  # at least a second apart
    assert _decide(10018, options=opted, age_s=59.5).step is Step.STOP  # the wait asked for
    capped = RetryPolicy(market_closed_cap_s=10)
    assert _decide(10018, options=opted, policy=capped, age_s=9.5).step is Step.STOP


def test_nothing_is_retried_once_the_order_is_stale_or_retries_are_off() -> None:
    assert _decide(10024, age_s=31.0).step is Step.STOP
    assert _decide(10024, policy=RetryPolicy(enabled=False)).step is Step.STOP
    assert _decide(10024, options=RetryOptions(enabled=False)).step is Step.STOP
    assert _decide(10006).step is Step.STOP  # REJECT: permanent


@given(
    reference=st.floats(1.0, 2.0),
    moved_points=st.integers(-50, 50),
    deviation=st.integers(0, 40),
)
def test_the_deviation_is_never_widened(
    reference: float, moved_points: int, deviation: int
) -> None:
    """Any price the new attempt accepts is within the band the caller allowed."""
    point = 0.00001
    fresh = reference + moved_points * point
    terms = r.fresh_price_terms(reference, fresh, deviation, point)
    if abs(moved_points) > deviation:
        assert terms is None
        return
    assert terms is not None
    assert terms.price == fresh
    widest = abs(fresh - reference) / point + terms.deviation_points
    assert widest <= deviation + 1e-6


def test_volume_changes() -> None:
    assert r.reduced_volume(1.0, 0.1, 0.01, 0.01) == 0.5
    assert r.reduced_volume(0.15, 0.1, 0.01, 0.01) is None  # 0.07 is under the floor
    assert r.reduced_volume(0.01, 0.0, 0.01, 0.01) is None  # cannot halve one step
    assert r.round_to_step(0.123, 0.01) == 0.12
    assert r.round_to_step(0.3, 0.1) == 0.3
    assert r.next_filling(0, frozenset({1, 2})) == 1
    assert r.next_filling(1, frozenset({0})) is None


def test_defaults_name_only_listed_codes() -> None:
    for platform, code in DEFAULT_STRATEGIES:
        if code >= 0:
            table = MT4_CODES if platform is Platform.MT4 else MT5_CODES
            assert code in table


def test_codes_the_reference_says_to_wait_for_are_not_retried_at_once() -> None:
    assert _decide(6, Platform.MT4, jitter=0.0).delay_s == 5.0
    assert _decide(136, Platform.MT4, jitter=0.0).delay_s == 5.0
    assert _decide(10021, jitter=0.0).delay_s == 1.0
    # "Server busy: minutes" is past the default max_age_s: no retry at all.
    assert _decide(4, Platform.MT4).step is Step.STOP


def test_a_closed_market_is_waited_for_past_max_attempts_but_not_past_the_wait() -> None:
    opted = RetryOptions(market_closed_wait_s=300)
    late = _decide(10018, options=opted, attempt=20, jitter=0.999, age_s=100.0)
    assert late.step is Step.RESEND and 1.0 <= late.delay_s <= r.MARKET_CLOSED_STEP_CAP_S
    assert _decide(10018, options=opted, attempt=99).step is Step.STOP  # the suffix's limit
