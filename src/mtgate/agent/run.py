"""``mtgate agent``: load the ``MetaTrader5`` package, start the terminal, dial the bridge."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtgate.agent.agent import Agent, AgentConfig
from mtgate.protocol.auth import MIN_KEY_BYTES, Secret


class AgentSetupError(Exception):
    """What stops the agent from starting, said for the user."""


@dataclass(frozen=True)
class AgentOptions:
    bridge: str
    terminal_id: str
    key_env: str = "MTGATE_TERMINAL_KEY"
    key_file: Path | None = None
    terminal_path: str | None = None
    login: int | None = None
    server: str | None = None
    password_env: str = "MTGATE_MT5_PASSWORD"
    poll_ms: int = 100


def load_key(opts: AgentOptions) -> Secret:
    if opts.key_file is not None:
        try:
            text = opts.key_file.read_text().strip()
        except OSError as exc:
            raise AgentSetupError(f"key file {opts.key_file}: {exc.strerror}") from None
        where = f"key file {opts.key_file}"
    else:
        text = os.environ.get(opts.key_env, "").strip()
        where = f"environment variable {opts.key_env}"
    if not text:
        raise AgentSetupError(f"no terminal key: {where} is empty")
    try:
        key = Secret.from_hex(text)
    except ValueError:
        raise AgentSetupError(f"{where}: the key is not hex") from None
    if len(key.reveal()) < MIN_KEY_BYTES:
        raise AgentSetupError(f"{where}: the key has fewer than {MIN_KEY_BYTES} bytes")
    return key


def load_package() -> Any:
    """The real ``MetaTrader5`` package (Windows, ``pip install "mtgate[agent]"``)."""
    try:
        return importlib.import_module("MetaTrader5")
    except ImportError:
        where = (
            ""
            if sys.platform == "win32"
            else " It runs on Windows only (or Windows Python under Wine)."
        )
        raise AgentSetupError(
            'the MetaTrader5 package is not installed: pip install "mtgate[agent]".' + where
        ) from None


def initialize_kwargs(opts: AgentOptions) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if opts.login is not None:
        kwargs["login"] = opts.login
        password = os.environ.get(opts.password_env, "")
        if password:
            kwargs["password"] = password
    if opts.server:
        kwargs["server"] = opts.server
    return kwargs


async def run_agent(opts: AgentOptions, mt5: Any) -> int:
    key = load_key(opts)
    host, _, port_text = opts.bridge.rpartition(":")
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise AgentSetupError(f"bridge {opts.bridge!r}: expected host:port")
    if not 20 <= opts.poll_ms <= 5_000:
        raise AgentSetupError(f"poll_ms {opts.poll_ms}: expected 20..5000")
    agent = Agent(mt5, AgentConfig(terminal_id=opts.terminal_id, key=key, poll_ms=opts.poll_ms))
    args = (opts.terminal_path,) if opts.terminal_path else ()
    ok = await agent.worker.run(lambda: mt5.initialize(*args, **initialize_kwargs(opts)))
    if not ok:
        raise AgentSetupError(f"MetaTrader5.initialize failed: {mt5.last_error()}")
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Windows has no add_signal_handler: Ctrl+C raises KeyboardInterrupt there instead.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, agent.stop)
    try:
        await agent.run(host, int(port_text))
    finally:
        await agent.aclose()
        await asyncio.to_thread(mt5.shutdown)
    return 0
