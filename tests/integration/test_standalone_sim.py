"""`mtgate sim` / `mtsim`: simulated terminals from a TOML file, against a running bridge."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mtgate.bridge import Bridge
from mtgate.domain.orders import OrderStatus
from mtgate.protocol.auth import Secret
from mtgate.sessions.session import grants_for
from mtgate.store.journal import open_journal
from mtsim.cli import load, run_from_file

KEY = "cd" * 32


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "terminals.toml"
    path.write_text(text)
    return path


async def test_terminals_from_a_file_dial_in_and_trade(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        f'seed = 3\ntick_interval_ms = 0\n[[terminals]]\nid = "file-1"\nkey = "{KEY}"\n'
        'login = 5001\nserver = "Sim-File"\nplatform = "mt5"\nmargin_mode = "netting"\n',
    )
    bridge = Bridge(
        terminals=grants_for([("file-1", Secret.from_hex(KEY), 5001, "Sim-File")]),
        journal=open_journal(f"sqlite:///{tmp_path / 'j.db'}"),
    )
    host, port = await bridge.start()
    sim = asyncio.create_task(run_from_file(path, host, port))
    try:
        await bridge.wait_ready({"file-1"}, timeout_s=10)
        r = await bridge.place_market_order(
            account="5001@Sim-File", symbol="EURUSD", side="buy", volume=0.1
        )
        assert r.status == OrderStatus.FILLED
    finally:
        sim.cancel()
        await asyncio.gather(sim, return_exceptions=True)
        await bridge.stop()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[[terminals]]\nid = 1\n", "Expected `str`"),
        (
            f'[[terminals]]\nid = "a"\nkey = "{KEY}"\nlogin = 1\nserver = "S"\nplatform = "mt6"\n',
            "platform",
        ),
        (
            f'[[terminals]]\nid = "a"\nkey = "{KEY}"\nlogin = 1\nserver = "S"\nplatform = "mt5"\n'
            'margin_mode = "both"\n',
            "margin_mode",
        ),
        ("terminals = [\n", "terminals.toml"),
    ],
)
def test_a_bad_terminals_file_is_refused_with_its_name(
    tmp_path: Path, text: str, fragment: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ValueError, match=r"terminals\.toml") as raised:
        load(path)
    assert fragment in str(raised.value)


async def test_run_from_file_reports_a_bad_file_with_exit_code_2(tmp_path: Path) -> None:
    assert await run_from_file(tmp_path / "missing.toml", "127.0.0.1", 1) == 2
