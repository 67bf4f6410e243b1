"""The chaos plan is a pure function of the seed and the order count."""

from __future__ import annotations

from mtgate.chaos.plan import ACCOUNTS, Fault, FaultKind, Op, OpKind, PlanOptions, make_plan
from mtgate.domain.enums import MarginMode, Platform
from mtgate.domain.orders import valid_client_id


def test_one_seed_gives_one_plan_and_another_seed_another() -> None:
    assert make_plan(500, 7) == make_plan(500, 7)
    assert make_plan(500, 7) != make_plan(500, 8)


def test_the_plan_has_the_operations_asked_for_with_unique_valid_client_ids() -> None:
    plan = make_plan(1000, 42)
    ops = [s for s in plan if isinstance(s, Op)]
    assert len(ops) == 1000
    ids = [o.client_order_id for o in ops]
    assert len(set(ids)) == len(ids)
    assert all(valid_client_id(i) and "." not in i for i in ids)
    assert [s.index for s in plan] == list(range(len(plan)))


def test_every_operation_and_fault_kind_and_account_is_drawn() -> None:
    plan = make_plan(3000, 11)
    assert {o.kind for o in plan if isinstance(o, Op)} == set(OpKind)
    assert {f.kind for f in plan if isinstance(f, Fault)} == set(FaultKind)
    assert {o.account for o in plan if isinstance(o, Op)} == set(range(len(ACCOUNTS)))


def test_accounts_cover_the_platforms_and_two_have_a_standby() -> None:
    kinds = {(a.platform, a.margin_mode) for a in ACCOUNTS}
    assert kinds == {
        (Platform.MT4, MarginMode.HEDGING),
        (Platform.MT5, MarginMode.HEDGING),
        (Platform.MT5, MarginMode.NETTING),
    }
    assert len(ACCOUNTS) >= 6
    assert sum(1 for a in ACCOUNTS if len(a.terminals) == 2) == 2


def test_only_the_bridge_restart_is_global_and_mt4_orders_never_expire() -> None:
    plan = make_plan(2000, 23)
    for step in plan:
        if isinstance(step, Fault):
            assert (step.account is None) == (step.kind == FaultKind.BRIDGE_RESTART)
        elif ACCOUNTS[step.account].platform == Platform.MT4:
            assert step.expire_s == 0.0


def test_the_fault_rate_is_an_option() -> None:
    faults = [s for s in make_plan(300, 1, PlanOptions(fault_rate=0)) if isinstance(s, Fault)]
    assert [(f.kind, f.index) for f in faults] == [(FaultKind.BRIDGE_RESTART, 150)]  # halfway
    assert all(
        s.pause_ms == 0 for s in make_plan(50, 1, PlanOptions(mean_pause_ms=0)) if isinstance(s, Op)
    )
