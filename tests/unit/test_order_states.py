"""The order state machine: the table is the only way between statuses."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtgate.domain.orders import (
    CLIENT_ID_MAX,
    TERMINAL,
    TRANSITIONS,
    InvalidTransition,
    OrderStatus,
    Trigger,
    client_id_from_comment,
    comment_for,
    new_client_id,
    new_order_id,
    transition,
    valid_client_id,
)


@pytest.mark.parametrize(("start", "trigger"), list(TRANSITIONS))
def test_every_listed_transition_applies(start: OrderStatus, trigger: Trigger) -> None:
    assert transition(start, trigger) == TRANSITIONS[(start, trigger)]


@given(st.sampled_from(OrderStatus), st.sampled_from(Trigger))
def test_anything_else_raises(start: OrderStatus, trigger: Trigger) -> None:
    if (start, trigger) in TRANSITIONS:
        assert transition(start, trigger) == TRANSITIONS[(start, trigger)]
    else:
        with pytest.raises(InvalidTransition):
            transition(start, trigger)


@pytest.mark.parametrize("status", sorted(TERMINAL))
def test_final_statuses_have_no_way_out_but_a_forced_attempt(status: OrderStatus) -> None:
    """Only a human's forced attempt leaves a final status, and only one that proves no
    attempt executed (mtgate.execution.forced): filled, cancelled and expired never."""
    ways = [t for (s, t) in TRANSITIONS if s == status]
    if status in (OrderStatus.REJECTED, OrderStatus.NOT_FOUND):
        assert ways == [Trigger.OVERRIDE_RETRY]
        assert transition(status, Trigger.OVERRIDE_RETRY) == OrderStatus.SUBMITTED
    else:
        assert ways == []


def test_unknown_can_only_become_not_found_by_proof() -> None:
    """Only a proven absence ends an UNKNOWN order without a finding (DESIGN §4)."""
    ways = {t for (s, t) in TRANSITIONS if s == OrderStatus.UNKNOWN}
    assert Trigger.PROVE_ABSENT in ways and Trigger.SEND not in ways and Trigger.REFUSE not in ways
    assert transition(OrderStatus.UNKNOWN, Trigger.PROVE_ABSENT) == OrderStatus.NOT_FOUND


@given(st.sampled_from(Trigger), st.lists(st.sampled_from(Trigger), max_size=8))
def test_every_path_from_new_stays_in_the_table(first: Trigger, rest: list[Trigger]) -> None:
    status = OrderStatus.NEW
    for trigger in [first, *rest]:
        try:
            nxt = transition(status, trigger)
        except InvalidTransition:
            continue
        assert (status, trigger) in TRANSITIONS
        status = nxt
    assert status in set(OrderStatus)


@given(st.integers(min_value=0, max_value=2**62))
def test_generated_client_ids_are_valid_and_fit_the_comment(now_ns: int) -> None:
    cid = new_client_id(now_ns)
    assert valid_client_id(cid) and len(cid) <= CLIENT_ID_MAX
    assert len(comment_for(cid)) <= 31
    assert client_id_from_comment(comment_for(cid)) == cid


@pytest.mark.parametrize(
    ("comment", "expected"),
    [
        ("mg:ABC-1", "ABC-1"),
        ("mg:ABC-1[sl]", "ABC-1"),
        ("mg:ABC-1 [tp]", "ABC-1"),
        ("from #1234", None),
        ("manual", None),
        ("mg:", None),
    ],
)
def test_client_id_survives_server_comment_markers(comment: str, expected: str | None) -> None:
    assert client_id_from_comment(comment) == expected


def test_order_ids_are_canonical_random_uuids() -> None:
    """What ``str(uuid.uuid4())`` would give: version 4, the RFC 4122 variant, lower-case
    dashed, and never the same twice."""
    ids = [new_order_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert str(parsed) == text
