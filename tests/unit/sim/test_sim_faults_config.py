"""``[faults]`` in the simulator's TOML file: random trade faults for every terminal."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtsim.cli import load, world_from
from mtsim.faults import FaultKind

KEY = "cd" * 32
TERMINAL = f'[[terminals]]\nid = "f1"\nkey = "{KEY}"\nlogin = 1\nserver = "S"\nplatform = "mt5"\n'


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "terminals.toml"
    path.write_text(text)
    return path


def test_faults_from_the_file_reach_every_terminal(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "seed = 4\nserver_start_ms = 1767225600000\n[faults]\nrates = { requote = 0.1, "
        "partial_fill = 0.2 }\ndelay_ms = [10, 20]\n" + TERMINAL,
    )
    world = world_from(load(path))
    plan = world.terminals["f1"].plan
    assert plan.random.rates == {FaultKind.REQUOTE: 0.1, FaultKind.PARTIAL_FILL: 0.2}
    assert plan.random.delay_ms == (10, 20)
    assert plan.armed
    assert world.faults_by_kind() == {}


@pytest.mark.parametrize(
    ("faults", "fragment"),
    [
        ("rates = { requote = 0.7, slow = 0.7 }", "sum to more than 1"),
        ("rates = { meteor = 0.1 }", "meteor"),
        ("rates = { requote = 1.5 }", "<= 1"),
        ("delay_ms = [30, 10]", "delay_ms"),
    ],
)
def test_bad_faults_are_refused_naming_the_file(tmp_path: Path, faults: str, fragment: str) -> None:
    path = _write(tmp_path, f"[faults]\n{faults}\n" + TERMINAL)
    with pytest.raises(ValueError, match=fragment) as info:
        load(path)
    assert str(path) in str(info.value)
