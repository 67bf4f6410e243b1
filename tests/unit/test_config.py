"""Configuration errors name the key and the file; secrets never print."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mtgate.config import ConfigError, HealthSection, load
from mtgate.health.settings import BOUNDS, HealthSettings
from mtgate.protocol.auth import Secret
from mtgate.sessions.session import AccountKey

KEY = "ab" * 32
ACCOUNT = 'account = "1001@Sim-MT5"\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mtgate.toml"
    path.write_text(text)
    return path


def test_defaults_without_a_file() -> None:
    config = load(None, env={})
    assert (config.bridge.host, config.bridge.port, config.store.url) == (
        "127.0.0.1",
        7788,
        "sqlite:///mtgate.db",
    )


def test_file_and_environment_overrides(tmp_path: Path) -> None:
    path = write(
        tmp_path, f'[bridge]\nport = 9000\n[[terminals]]\nid = "a"\nkey = "{KEY}"\n{ACCOUNT}'
    )
    config = load(
        path, env={"MTGATE_STORE_URL": "postgresql+psycopg://x/y", "MTGATE_BRIDGE_PORT": "9100"}
    )
    assert config.bridge.port == 9100
    assert config.store.url == "postgresql+psycopg://x/y"
    assert config.grants()["a"].key == Secret.from_hex(KEY)


def test_key_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEY_A", KEY)
    path = write(tmp_path, f'[[terminals]]\nid = "a"\nkey_env = "KEY_A"\n{ACCOUNT}')
    assert load(path).grants()["a"].key.reveal() == bytes.fromhex(KEY)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[bridge]\nport = 70000\n", "bridge.port"),
        ("[bridge]\nprot = 1\n", "prot"),
        ("[bridge\n", "not valid TOML"),
        (f'[[terminals]]\nid = "a"\nkey = "zz"\n{ACCOUNT}', "key is not hex"),
        (f'[[terminals]]\nid = "a"\nkey = "abcd"\n{ACCOUNT}', "at least 32"),
        (
            f'[[terminals]]\nid = "a"\nkey = "{KEY}"\n{ACCOUNT}'
            f'[[terminals]]\nid = "a"\nkey = "{KEY}"\n{ACCOUNT}',
            "appears twice",
        ),
        (f'[[terminals]]\nid = "a"\n{ACCOUNT}', "no key"),
        (f'[[terminals]]\nid = "a"\nkey = "{KEY}"\n', "terminals[a].account: missing"),
        (f'[[terminals]]\nid = "a"\nkey = "{KEY}"\naccount = []\n', "terminals[a].account"),
        (f'[[terminals]]\nid = "a"\nkey = "{KEY}"\naccount = "1001"\n', "terminals[a].account"),
        (
            f'[[terminals]]\nid = "a"\nkey = "{KEY}"\naccount = "{"9" * 25}@S"\n',
            "terminals[a].account",
        ),
        (f'[[terminals]]\nid = "a b"\nkey = "{KEY}"\n{ACCOUNT}', "terminals[0].id"),
        ("[bridge]\nmagic = 0\n", "bridge.magic"),
        ("[bridge]\nheartbeat_ms = 600000\n", "bridge.heartbeat_ms"),
        ("[bridge]\nheartbeat_ms = 60001\n", "bridge.heartbeat_ms"),  # protocol review D10
        ("[bridge]\nheartbeat_ms = 99\n", "bridge.heartbeat_ms"),
        ("[bridge]\ntrade_queue_wait_ms = 0\n", "bridge.trade_queue_wait_ms"),
        ("[bridge]\ntrade_queue_wait_ms = 600001\n", "bridge.trade_queue_wait_ms"),
        ("[bridge]\ntrade_queue_max = 0\n", "bridge.trade_queue_max"),
        ('[bridge]\ntrade_queue_max = "many"\n', "bridge.trade_queue_max"),
        ("[bridge]\nmax_trade_call_s = 0\n", "bridge.max_trade_call_s"),
        ("[bridge]\nmax_trade_call_s = 1e9\n", "bridge.max_trade_call_s"),
    ],
)
def test_bad_config_names_the_problem_and_the_file(
    tmp_path: Path, text: str, fragment: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load(path, env={})
    assert fragment in str(raised.value)
    assert str(path) in str(raised.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load(tmp_path / "absent.toml", env={})


def test_secret_never_shows_in_repr() -> None:
    secret = Secret.from_hex(KEY)
    assert KEY not in repr(secret) and KEY not in str(secret)


def test_sync_section_and_its_environment_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "[sync]\ninterval_ms = 500\nmargin_history_interval_ms = 60000\n")
    config = load(path, env={"MTGATE_SYNC_STORE_FLUSH_INTERVAL_MS": "250"})
    assert (config.sync.enabled, config.sync.interval_ms) == (True, 500)
    assert config.sync.margin_history_interval_ms == 60_000
    assert config.sync.store_flush_interval_ms == 250
    assert load(None, env={"MTGATE_SYNC_ENABLED": "false"}).sync.enabled is False


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[sync]\ninterval_ms = 50\n", "interval_ms"),
        ("[sync]\ninterval_ms = 'fast'\n", "interval_ms"),
        ("[sync]\nperiod = 1\n", "period"),
    ],
)
def test_bad_sync_values_name_the_key_and_the_file(tmp_path: Path, text: str, named: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load(path, env={})
    assert named in str(caught.value) and str(path) in str(caught.value)


def test_f1_a_terminal_is_bound_to_its_accounts(tmp_path: Path) -> None:
    """The binding the handshake checks: one account, or a list of them."""
    path = write(
        tmp_path,
        f'[[terminals]]\nid = "a"\nkey = "{KEY}"\naccount = "1001@Sim-MT5"\n'
        f'[[terminals]]\nid = "b"\nkey = "{KEY}"\naccount = ["7@X", "8@X"]\n',
    )
    grants = load(path, env={}).grants()
    assert grants["a"].accounts == {AccountKey(1001, "Sim-MT5")}
    assert grants["b"].accounts == {AccountKey(7, "X"), AccountKey(8, "X")}


def test_health_section_and_its_environment_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "[health]\ninterval_ms = 1000\nmax_execution_latency_ms = 50.0\n")
    config = load(path, env={"MTGATE_HEALTH_FLAP_DISCONNECTS": "5"})
    settings = config.health.settings()
    assert (settings.interval_ms, settings.max_execution_latency_ms) == (1000, 50.0)
    assert settings.flap_disconnects == 5
    assert load(None, env={}).health.settings() == HealthSettings()


def test_health_section_has_the_settings_fields_and_bounds() -> None:
    fields = [f.name for f in dataclasses.fields(HealthSettings)]
    assert list(HealthSection.__struct_fields__) == fields
    assert set(BOUNDS) <= set(fields)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("interval_ms", 99),
        ("interval_ms", 3_600_001),
        ("max_rejection_rate_pct", 101),
        ("flap_disconnects", 1),
        ("stale_after_intervals", 1),
        ("latency_samples", 10),
        ("nonsense", 1),
    ],
)
def test_bad_health_values_name_the_key(tmp_path: Path, key: str, value: int) -> None:
    path = write(tmp_path, f"[health]\n{key} = {value}\n")
    with pytest.raises(ConfigError) as raised:
        load(path, env={})
    assert key in str(raised.value) and str(path) in str(raised.value)


def test_retry_section_overrides_codes_over_the_defaults(tmp_path: Path) -> None:
    from mtgate.domain.enums import Platform
    from mtgate.domain.retry import Strategy

    path = write(
        tmp_path,
        '[retry]\nmax_attempts = 3\n[retry.codes]\n"mt4:146" = "none"\n"mt5:10006" = "backoff"\n',
    )
    policy = load(path, env={"MTGATE_RETRY_MAX_AGE_S": "5"}).retry.policy()
    assert (policy.max_attempts, policy.max_age_s) == (3, 5.0)
    assert policy.strategy(Platform.MT4, 146) is Strategy.NONE
    assert policy.strategy(Platform.MT5, 10006) is Strategy.BACKOFF
    assert policy.strategy(Platform.MT5, 10004) is Strategy.FRESH_PRICE  # default kept


@pytest.mark.parametrize(
    ("codes", "named"),
    [
        ('"mt5:10012" = "backoff"', "the order may have executed"),  # outcome unknown
        ('"mt5:10009" = "backoff"', "the order may have executed"),  # success
        ('"mt5:99999" = "backoff"', "not in the registry"),
        ('"mt6:138" = "none"', "expected mt4:<code> or mt5:<code>"),
        ('"mt4:138" = "sometimes"', "is not one of"),
    ],
)
def test_bad_retry_codes_name_the_entry_and_the_file(
    tmp_path: Path, codes: str, named: str
) -> None:
    path = write(tmp_path, f"[retry.codes]\n{codes}\n")
    with pytest.raises(ConfigError) as caught:
        load(path, env={})
    assert named in str(caught.value) and str(path) in str(caught.value)


@pytest.mark.parametrize(
    "text",
    ["[retry]\nmax_attempts = 100\n", "[retry]\nbackoff_base_ms = 500\nbackoff_cap_ms = 100\n"],
)
def test_bad_retry_values_are_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError):
        load(write(tmp_path, text), env={})


API_TOKEN = "z" * 40


def _api(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "api.toml"
    path.write_text(text)
    return path


def test_the_api_is_off_without_its_table_and_on_with_it(tmp_path: Path) -> None:
    assert not load(None).api.enabled
    cfg = load(
        _api(
            tmp_path,
            f'[api]\n[[api.tokens]]\nname = "e"\nscopes = ["trade"]\ntoken = "{API_TOKEN}"\n',
        )
    )
    assert cfg.api.enabled and cfg.api.host == "127.0.0.1"  # loopback unless configured
    caller = cfg.api.auth().caller(f"Bearer {API_TOKEN}")
    assert caller is not None and {s.value for s in caller.scopes} == {"read", "trade"}
    assert API_TOKEN not in repr(cfg)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (f'[[api.tokens]]\nname = "e"\nscopes = ["read"]\ntoken = "{API_TOKEN}"\n'
         f'[[api.tokens]]\nname = "e"\nscopes = ["read"]\ntoken = "{"y" * 40}"\n',
         "appears twice"),
        (f'tls_cert = "c.pem"\n[[api.tokens]]\nname = "e"\nscopes = ["read"]\ntoken = "{API_TOKEN}"\n',
         "tls_key"),
        ('[[api.tokens]]\nname = "e"\nscopes = []\ntoken = "' + API_TOKEN + '"\n', "scopes"),
    ],
)  # fmt: skip
def test_a_bad_api_table_names_the_key(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load(_api(tmp_path, "[api]\n" + extra))
    assert API_TOKEN not in str(caught.value)


def test_the_example_configurations_load(monkeypatch: pytest.MonkeyPatch) -> None:
    from mtsim.cli import load as load_sim

    examples = Path(__file__).parents[2] / "examples"
    monkeypatch.setenv("MTGATE_ENGINE_TOKEN", API_TOKEN)
    cfg = load(examples / "mtgate.toml")
    assert cfg.api.enabled and [t.name for t in cfg.api.tokens] == ["engine"]
    sim = load_sim(examples / "sim-terminals.toml")
    (entry,) = sim.terminals
    (grant,) = cfg.grants().values()
    assert AccountKey(entry.login, entry.server) in grant.accounts
    assert Secret.from_hex(entry.key) == grant.key


@pytest.mark.parametrize("heartbeat_ms", [99, 60_001])
def test_a_session_heartbeat_no_ea_accepts_is_refused(heartbeat_ms: int) -> None:
    """Built without a config file too (docs/protocol.md §8: an EA refuses it, forever)."""
    from mtgate.sessions.session import SessionSettings

    with pytest.raises(ValueError, match="heartbeat_ms"):
        SessionSettings(heartbeat_ms=heartbeat_ms)
    assert SessionSettings(heartbeat_ms=60_000).heartbeat_ms == 60_000
