"""The soak's schedule is open-loop Poisson at the asked rate with the stated mix, the same for
a seed; its options refuse what cannot run; the CLI says what is wrong with a bad range."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
from typer.testing import CliRunner

from mtgate.bench.soak import SoakOptions, percentiles, schedule
from mtgate.cli import app


def test_schedule_is_poisson_at_the_rate_with_the_mix() -> None:
    opts = SoakOptions(rate=2000, seconds=10, terminals=7, seed=3)
    plan = schedule(opts)
    assert 19_000 < len(plan) < 21_000  # 20,000 expected; sd ~141
    times = [t for t, _, _ in plan]
    assert times == sorted(times) and times[0] > 0 and times[-1] < 10
    gaps = [b - a for a, b in itertools.pairwise(times)]
    mean = sum(gaps) / len(gaps)
    var = sum((g - mean) ** 2 for g in gaps) / len(gaps)
    assert mean == pytest.approx(1 / 2000, rel=0.05)
    assert var**0.5 == pytest.approx(mean, rel=0.1)  # exponential gaps: sd = mean
    kinds = Counter(k for _, _, k in plan)
    assert kinds["market"] / len(plan) == pytest.approx(0.90, abs=0.01)
    assert kinds["modify"] / len(plan) == pytest.approx(0.05, abs=0.01)
    assert kinds["partial_close"] / len(plan) == pytest.approx(0.05, abs=0.01)
    assert {a for _, a, _ in plan} == set(range(7))
    assert schedule(opts) == plan
    assert schedule(SoakOptions(rate=2000, seconds=10, terminals=7, seed=4)) != plan


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"rate": 0}, "rate"),
        ({"seconds": -1}, "seconds"),
        ({"terminals": 0}, "terminals"),
        ({"positions": 5000}, "positions"),
        ({"delay_ms": (60.0, 20.0)}, "delay_ms"),
    ],
)
def test_options_refuse_what_cannot_run(fields: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SoakOptions(**fields)  # type: ignore[arg-type]


def test_percentiles_of_nothing_and_of_a_range() -> None:
    assert percentiles([])["count"] == 0
    p = percentiles(float(x) for x in range(1, 1001))
    assert (p["p50"], p["p99"], p["p999"], p["max"]) == (501.0, 991.0, 1000.0, 1000.0)


@pytest.mark.parametrize("delay", ["20-60", "a,b", "60,20"])
def test_cli_refuses_a_bad_delay_range(delay: str) -> None:
    runner = CliRunner(env={"COLUMNS": "200"})
    result = runner.invoke(app, ["soak", "--delay-ms", delay, "--seconds", "1"])
    assert result.exit_code == 2
    assert "delay" in result.output and "expected" in result.output


@pytest.mark.parametrize("command", ["soak", "bench"])
def test_cli_refuses_a_store_it_cannot_use(command: str) -> None:
    runner = CliRunner(env={"COLUMNS": "200"})
    result = runner.invoke(
        app,
        [command, "--store", "sqlite", "--store", "mysql://u@h/db"]
        if command == "bench"
        else [command, "--store", "mysql://u@h/db"],
    )
    assert result.exit_code == 2
    assert "scheme 'mysql' is not supported" in result.output
