"""``mtgate conformance`` passes every step against the simulated EA and against the agent
over the fake package, and a broken terminal fails the steps it should."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtgate import logs
from mtgate.cli import app
from mtgate.conformance.runner import Report, run_conformance, sim_target

PROBES = (
    "an unsealed frame after the handshake ends the session",
    "frames out of order end the session",
    "heartbeat (pong echoes t_ms, pings at the interval)",
)


def _failed(report: Report) -> set[str]:
    return {s.name for s in report.steps if not s.passed}


def test_the_command_passes_against_the_simulated_terminal(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    result = CliRunner().invoke(app, ["conformance", "--against", "sim", "--json", str(out)])
    report = json.loads(out.read_text())
    assert result.exit_code == 0, result.output
    assert report["failed"] == 0 and report["passed"] == len(report["steps"]) > 40
    assert all(set(s) == {"name", "passed", "detail"} for s in report["steps"])
    names = {s["name"] for s in report["steps"]}
    for tid in ("conf-mt4", "conf-mt5h", "conf-mt5n"):  # every account type
        assert f"{tid}: connection cut mid-trade, found once after reconnecting" in names
    assert "conf-mt5n: close by an opposite position (hedging)" not in names  # netting
    assert "51 passed, 0 failed" in result.output


async def test_the_agent_over_the_fake_package_passes_every_step() -> None:
    report = await run_conformance(sim_target("agent-fake"))
    assert report.failed == 0, [(s.name, s.detail) for s in report.steps if not s.passed]
    assert report.passed == len(report.steps) > 30


async def test_a_terminal_with_the_wrong_key_fails_the_handshakes() -> None:
    report = await run_conformance(sim_target("sim", broken="wrong_key", dial_timeout_s=3))
    expected = {f"{t}: {p}" for t in ("conf-mt4", "conf-mt5h", "conf-mt5n") for p in PROBES}
    assert _failed(report) == expected | {"bridge: every terminal authenticated and ready"}
    # It still refuses a bridge without the key: that step holds.
    assert not {s.name for s in report.steps if s.passed} - {
        f"{t}: {p}"
        for t in ("conf-mt4", "conf-mt5h", "conf-mt5n")
        for p in ("dials the bridge", "refuses a bridge that cannot prove the key")
    }


async def test_a_terminal_that_seals_nothing_fails_every_sealed_step() -> None:
    report = await run_conformance(sim_target("sim", broken="unsealed", dial_timeout_s=3))
    expected = {f"{t}: {p}" for t in ("conf-mt4", "conf-mt5h", "conf-mt5n") for p in PROBES}
    assert _failed(report) == expected | {"bridge: every terminal authenticated and ready"}


async def test_a_terminal_that_sends_frames_out_of_order_fails_where_it_does() -> None:
    """The fault swaps its first two sealed frames once: the first sealed session shows it."""
    report = await run_conformance(sim_target("sim", broken="out_of_order", dial_timeout_s=3))
    assert _failed(report) == {
        f"{t}: an unsealed frame after the handshake ends the session"
        for t in ("conf-mt4", "conf-mt5h", "conf-mt5n")
    }


def test_a_bad_target_is_refused_clearly() -> None:
    result = CliRunner().invoke(app, ["conformance", "--against", "mt6"])
    assert result.exit_code == 2 and "expected sim, agent-fake or terminal" in result.output
    result = CliRunner().invoke(app, ["conformance", "--against", "terminal"])
    assert result.exit_code == 2 and "--demo-account" in result.output
    result = CliRunner().invoke(app, ["conformance", "--against", "terminal", "--demo-account"])
    assert result.exit_code == 2 and "--terminal-id" in result.output


def test_a_wrong_fault_name_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        sim_target("sim", broken="gremlins")


@pytest.fixture(autouse=True)
def _logging_left_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands configure logging for a process of their own; run in the test process
    they must not change it for the tests after (its loggers are cached on first use)."""
    monkeypatch.setattr(logs, "configure", lambda **_: None)


async def test_a_netting_position_of_the_user_is_left_alone() -> None:
    """Review C3: on a netting account the run's trades would add to or close the user's
    own position on the symbol: the run refuses to trade there, says so, and the position
    is as it was."""
    target = sim_target("agent-fake")
    server = target.world.servers["Sim-MT5"]
    server.manual_market_order(2002, "EURUSD", 1, 0.05)  # the user's sell on the netting account
    report = await run_conformance(target)
    failed = _failed(report)
    assert failed == {"conf-mt5n: the netting account holds no position on EURUSD"}
    (held,) = server.positions(2002)
    assert (held.type, held.volume) == (1, 0.05)
    assert not any(s.name.startswith("conf-mt5n: market order") for s in report.steps)
