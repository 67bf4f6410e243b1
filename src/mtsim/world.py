"""A simulated world: trade servers, their accounts, and the terminals logged into them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from mtgate.agent.agent import Agent, AgentConfig
from mtgate.domain.clock import Clock
from mtgate.domain.enums import MarginMode, Platform
from mtgate.protocol.auth import Secret, new_key
from mtsim.faults import RandomFaults, merged_counts
from mtsim.mt5fake import FakeMetaTrader5
from mtsim.prices import PriceFeed
from mtsim.server import ServerConfig, TradeServer
from mtsim.symbols import DEFAULT_SYMBOLS
from mtsim.terminal import SimTerminal, TerminalConfig


@dataclass(frozen=True, slots=True)
class AccountSpec:
    """One terminal logged into one account of a named trade server."""

    terminal_id: str
    login: int
    server: str
    platform: Platform
    margin_mode: MarginMode = MarginMode.HEDGING
    balance: float = 100_000.0
    leverage: int = 100
    key: Secret = field(default_factory=new_key)
    sync: bool = True
    """Whether the terminal's EA offers the "sync" feature."""
    positions: bool = True
    """Whether the terminal's EA offers the "positions" feature."""
    deadlines: bool = True
    """Whether the terminal's EA offers the "deadline" feature (docs/protocol.md §4.4)."""
    pipeline: bool = False
    """Whether an MT5 terminal's EA offers the "pipeline" feature (several trades at once,
    docs/protocol.md §4.3); an MT4 EA never does."""


class SimWorld:
    """Builds one :class:`TradeServer` per server name and one terminal per account spec.

    Several specs may name the same login: several terminals logged into one account.

    ``mt5_terminals``: what runs beside each MT5 account: ``"sim"``, the simulated EA, or
    ``"agent-fake"``, the MetaTrader5 agent (:mod:`mtgate.agent`) over the strict fake
    ``MetaTrader5`` package (:mod:`mtsim.mt5fake`). MT4 accounts always get the simulated EA
    (the agent is MT5-only). Agents are in :attr:`agents`, not in :attr:`terminals`.
    """

    def __init__(
        self,
        accounts: list[AccountSpec],
        *,
        clock: Clock,
        seed: int = 0,
        configs: Mapping[str, ServerConfig] | None = None,
        broker_delay_ms: tuple[float, float] = (0.0, 0.0),
        read_delay_ms: float = 0.0,
        random_faults: RandomFaults | None = None,
        mt5_terminals: str = "sim",
    ) -> None:
        if mt5_terminals not in ("sim", "agent-fake"):
            raise ValueError(f"mt5_terminals is sim or agent-fake, not {mt5_terminals!r}")
        self.accounts = accounts
        self.servers: dict[str, TradeServer] = {}
        self.terminals: dict[str, SimTerminal] = {}
        self.agents: dict[str, Agent] = {}
        self.fakes: dict[str, FakeMetaTrader5] = {}
        self._tasks: list[asyncio.Task[None]] = []
        configs = configs or {}
        opened: set[tuple[str, int]] = set()
        for i, spec in enumerate(accounts):
            server = self.servers.get(spec.server)
            if server is None:
                feed = PriceFeed(DEFAULT_SYMBOLS, seed=seed + len(self.servers), clock=clock)
                server = TradeServer(
                    name=spec.server,
                    platform=spec.platform,
                    clock=clock,
                    feed=feed,
                    config=configs.get(spec.server),
                )
                self.servers[spec.server] = server
            if server.platform != spec.platform:
                raise ValueError(
                    f"{spec.terminal_id}: server {spec.server} is {server.platform}, not {spec.platform}"
                )
            if (spec.server, spec.login) not in opened:
                server.open_account(
                    login=spec.login,
                    margin_mode=spec.margin_mode,
                    balance=spec.balance,
                    leverage=spec.leverage,
                )
                opened.add((spec.server, spec.login))
            if spec.platform == Platform.MT5 and mt5_terminals == "agent-fake":
                fake = FakeMetaTrader5(server, spec.login)
                self.fakes[spec.terminal_id] = fake
                self.agents[spec.terminal_id] = Agent(
                    fake,
                    AgentConfig(
                        terminal_id=spec.terminal_id,
                        key=spec.key,
                        sync=spec.sync,
                        positions=spec.positions,
                        deadlines=spec.deadlines,
                        poll_ms=20,
                    ),
                )
                continue
            config = TerminalConfig(
                terminal_id=spec.terminal_id,
                key=spec.key,
                login=spec.login,
                broker_delay_ms=broker_delay_ms,
                read_delay_ms=read_delay_ms,
                seed=seed + i,
                sync=spec.sync,
                positions=spec.positions,
                deadlines=spec.deadlines,
                pipeline=spec.pipeline,
                random_faults=random_faults,
            )
            self.terminals[spec.terminal_id] = SimTerminal(server, config)

    def faults_by_kind(self) -> dict[str, int]:
        """Faults injected so far by every terminal, by kind (mtsim.faults)."""
        return merged_counts(t.plan for t in self.terminals.values())

    def keys(self) -> dict[str, Secret]:
        return {spec.terminal_id: spec.key for spec in self.accounts}

    def bindings(self) -> list[tuple[str, Secret, int, str]]:
        """(terminal id, key, login, server) of every terminal: what a bridge configures to
        let each one serve its own account only."""
        return [(s.terminal_id, s.key, s.login, s.server) for s in self.accounts]

    def server_of(self, terminal_id: str) -> TradeServer:
        spec = next(s for s in self.accounts if s.terminal_id == terminal_id)
        return self.servers[spec.server]

    def account_of(self, terminal_id: str) -> str:
        spec = next(s for s in self.accounts if s.terminal_id == terminal_id)
        return f"{spec.login}@{spec.server}"

    def start(self, host: str, port: int, *, tick_interval_s: float | None = None) -> None:
        """Dial the bridge from every terminal; move prices every ``tick_interval_s`` if given."""
        loop = asyncio.get_running_loop()
        for terminal in self.terminals.values():
            self._tasks.append(
                loop.create_task(
                    terminal.run(host, port), name=f"sim:{terminal.config.terminal_id}"
                )
            )
        for terminal_id, agent in self.agents.items():
            self._tasks.append(
                loop.create_task(self._run_agent(agent, host, port), name=f"agent:{terminal_id}")
            )
        if tick_interval_s:
            self._tasks.append(
                loop.create_task(self._move_prices(tick_interval_s), name="sim:prices")
            )

    @staticmethod
    async def _run_agent(agent: Agent, host: str, port: int) -> None:
        await agent.start_terminal()
        await agent.run(host, port)

    async def _move_prices(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            for server in self.servers.values():
                server.step()

    async def stop(self) -> None:
        for terminal in self.terminals.values():
            terminal.stop()
        for agent in self.agents.values():
            agent.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for agent in self.agents.values():
            await agent.aclose()
