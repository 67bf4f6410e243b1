"""docs/protocol.md as a contract: what the spec's tables say is what the code does."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mtgate.protocol import codec

ROOT = Path(__file__).parents[2]
SPEC = (ROOT / "docs" / "protocol.md").read_text()


def _section(title: str) -> str:
    start = SPEC.index(title)
    end = SPEC.index("\n### ", start + len(title))
    return SPEC[start:end]


def test_every_bye_code_either_side_sends_is_in_the_spec() -> None:
    """Review D3/D4: the bridge sent codes the table did not name."""
    table = set(re.findall(r"^\| `([a-z_]+)` \|", _section("### 2.3 Protocol errors"), re.M))
    sent: dict[str, str] = {}
    for path in [*(ROOT / "src" / "mtgate").rglob("*.py"), *(ROOT / "src" / "mtsim").rglob("*.py")]:
        text = path.read_text()
        for code in re.findall(r"""code="([a-z_]+)"\s*\)""", text):
            sent.setdefault(code, str(path.relative_to(ROOT)))
        for code in re.findall(r"""ProtocolError\(\s*"([a-z_]+)\"""", text):
            sent.setdefault(code, str(path.relative_to(ROOT)))
    assert {"trade_timeout", "outcome_unknown", "sync_failed", "auth_failed"} <= set(sent)
    missing = {code: where for code, where in sent.items() if code not in table}
    assert not missing, f"bye codes sent but not in docs/protocol.md §2.3: {missing}"


@pytest.mark.parametrize(
    "body",
    [
        b'{"type":"res","id":1,"ok":false}',
        b'{"type":"res","id":1,"ok":true,"error":{"code":-4,"name":"internal","message":"x"}}',
        b'{"type":"res","id":1,"ok":false,"result":{"code":0}}',
    ],
)
def test_a_response_has_an_error_exactly_when_it_is_not_ok(body: bytes) -> None:
    """Review D5: §4.2 said ``ok: false`` without ``error`` reads as -4; it is a protocol error."""
    with pytest.raises(codec.ProtocolError) as caught:
        codec.decode_for_bridge(body)
    assert caught.value.code == "invalid_message"
