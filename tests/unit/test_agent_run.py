"""``mtgate agent``'s set-up: every mistake is a clear message, and nothing dials before the
key, the bridge address and the package are right."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtgate import logs
from mtgate.agent.run import AgentOptions, AgentSetupError, load_key, load_package, run_agent
from mtgate.cli import app

KEY = "ab" * 32


def test_the_key_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K", KEY)
    assert load_key(
        AgentOptions(bridge="h:1", terminal_id="t", key_env="K")
    ).reveal() == bytes.fromhex(KEY)


@pytest.mark.parametrize(
    ("text", "why"), [("", "is empty"), ("zz" * 32, "not hex"), ("ab" * 4, "fewer than")]
)
def test_a_bad_key_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str, why: str
) -> None:
    monkeypatch.setenv("K", text)
    with pytest.raises(AgentSetupError, match=why):
        load_key(AgentOptions(bridge="h:1", terminal_id="t", key_env="K"))
    path = tmp_path / "key.txt"
    path.write_text(text)
    with pytest.raises(AgentSetupError, match=why):
        load_key(AgentOptions(bridge="h:1", terminal_id="t", key_file=path))


def test_a_missing_key_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(AgentSetupError, match="key file"):
        load_key(AgentOptions(bridge="h:1", terminal_id="t", key_file=tmp_path / "none"))


@pytest.mark.parametrize("bridge", ["nohost", ":7788", "h:0", "h:99999", "h:port"])
async def test_a_bad_bridge_address_is_refused_before_anything_starts(
    monkeypatch: pytest.MonkeyPatch, bridge: str
) -> None:
    monkeypatch.setenv("MTGATE_TERMINAL_KEY", KEY)

    class Untouchable:
        def __getattr__(self, name: str) -> object:
            raise AssertionError(f"the package was called ({name})")

    with pytest.raises(AgentSetupError, match="host:port"):
        await run_agent(AgentOptions(bridge=bridge, terminal_id="t"), Untouchable())


@pytest.mark.skipif(sys.platform == "win32", reason="the package may be installed on Windows")
def test_without_the_package_the_agent_says_how_to_get_it() -> None:
    with pytest.raises(AgentSetupError, match=r"mtgate\[agent\].*Windows only"):
        load_package()
    result = CliRunner().invoke(app, ["agent", "--terminal-id", "t"])
    assert result.exit_code == 2
    assert "MetaTrader5 package is not installed" in result.output


def test_the_terminal_id_is_required() -> None:
    result = CliRunner().invoke(app, ["agent"])
    assert result.exit_code == 2 and "--terminal-id is required" in result.output


@pytest.fixture(autouse=True)
def _logging_left_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands configure logging for a process of their own; run in the test process
    they must not change it for the tests after (its loggers are cached on first use)."""
    monkeypatch.setattr(logs, "configure", lambda **_: None)
