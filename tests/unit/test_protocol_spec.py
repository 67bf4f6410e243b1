"""docs/protocol.md as a contract: what the spec's tables say is what the code does."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pytest

from mtgate.domain.orders import client_id_from_comment
from mtgate.protocol import codec
from mtgate.protocol import messages as m
from mtgate.protocol.auth import (
    TO_BRIDGE,
    TO_EA,
    FrameSeal,
    Secret,
    bridge_proof,
    ea_proof,
    session_key,
)

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


# --- §14: every example frame -------------------------------------------------------------

_FRAME = re.compile(
    r"^(EA → bridge|bridge → EA)\s+((?:[0-9a-f]{2} ){3}[0-9a-f]{2})\s+\((\d+) bytes\)\n"
    r"((?:[0-9a-f]{80})?\{.*\})$",
    re.M,
)
_KEY = Secret.from_hex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
_EA_NONCE, _BRIDGE_NONCE = "3f9c0a7d52e14b8c9a6f0e1d2c3b4a59", "b7e2c41f09d83a6e5f1c2b3a4d5e6f70"


def _example_wire() -> list[tuple[str, bytes, int, bytes]]:
    """(direction, header, stated length, body as on the wire) of each example frame."""
    start = SPEC.index("## 14. Example exchange")
    found = _FRAME.findall(SPEC[start:])
    return [(d, bytes.fromhex(h.replace(" ", "")), int(n), b.encode()) for d, h, n, b in found]


def _example_frames() -> list[tuple[str, bytes, int, bytes]]:
    """The example frames with each sealed body opened (§3.5): the MAC of every frame after
    ``auth`` verifies under the vector's session key, in sequence, in its direction."""
    wire = _example_wire()
    hello, welcome = wire[0][3], wire[1][3]
    frames_key = session_key(_KEY, "ftmo-01", _EA_NONCE, _BRIDGE_NONCE, hello, welcome)
    opener = {
        "bridge → EA": FrameSeal(frames_key, TO_EA),
        "EA → bridge": FrameSeal(frames_key, TO_BRIDGE),
    }
    out, sealed = [], False
    for direction, header, stated, body in wire:
        out.append((direction, header, stated, opener[direction].open(body) if sealed else body))
        sealed = sealed or b'"type":"auth"' in body
    return out


def test_the_example_exchange_has_every_frame() -> None:
    kinds = [json.loads(body)["type"] for _, _, _, body in _example_frames()]
    assert kinds == [
        "hello", "welcome", "auth", "ready", "market_order", "res", "evt", "market_order",
        "res", "ping", "pong",
    ]  # fmt: skip


@pytest.mark.parametrize("frame", _example_frames(), ids=lambda f: f[3][:24].decode())
def test_every_example_frame_is_framed_decoded_and_re_encoded(
    frame: tuple[str, bytes, int, bytes],
) -> None:
    direction, header, stated, body = frame
    wire = next(w for w in _example_wire() if w[1] == header and w[0] == direction)
    assert struct.unpack(">I", header)[0] == stated == len(wire[3]), "the header is the length"
    decode = codec.decode_for_bridge if direction == "EA → bridge" else codec.decode_for_terminal
    msg = decode(body)
    again = codec.encode(msg)
    assert decode(again[4:]) == msg  # what the reference encoder writes reads back the same
    if isinstance(msg, m.Response) and msg.ok:
        result = codec.decode_result(m.MarketOrder, msg.result)
        assert isinstance(result, m.TradeResult) and result.code == 10009
    if isinstance(msg, m.Event):
        deal = codec.decode_event(msg.name, msg.data)
        assert isinstance(deal, m.DealReport) and deal.ticket == 1445796125
    if isinstance(msg, m.MarketOrder):
        assert client_id_from_comment(msg.comment) is not None  # a comment the bridge makes


def test_the_proof_test_vector_and_the_example_agree() -> None:
    """§3.4's vector, computed here; the example's welcome and auth carry the same proofs."""
    key, ea_nonce, bridge_nonce = _KEY, _EA_NONCE, _BRIDGE_NONCE
    p_bridge = bridge_proof(key, "ftmo-01", ea_nonce, bridge_nonce)
    p_ea = ea_proof(key, "ftmo-01", ea_nonce, bridge_nonce)
    vector = _section("### 3.4 Proofs")
    assert f"| P_bridge | `{p_bridge}` |" in vector and f"| P_ea | `{p_ea}` |" in vector
    frames = {json.loads(body)["type"]: json.loads(body) for _, _, _, body in _example_frames()}
    assert (frames["hello"]["nonce"], frames["welcome"]["nonce"]) == (ea_nonce, bridge_nonce)
    assert (frames["welcome"]["proof"], frames["auth"]["proof"]) == (p_bridge, p_ea)


# --- rules of §2 that no other test pins ------------------------------------------------------


def test_floats_in_exponent_form_are_read() -> None:
    """§2.2: receivers MUST parse exponents (an EA may write ``1.0841000000000001e+00``)."""
    body = (
        b'{"type":"res","id":1,"ok":true,"result":{"symbol":"EURUSD","bid":1.0841000000000001e+00,'
        b'"ask":108413E-5,"time_ms":1}}'
    )
    msg = codec.decode_for_bridge(body)
    assert isinstance(msg, m.Response)
    tick = codec.decode_result(m.GetTick, msg.result)
    assert (tick.bid, tick.ask) == (1.0841000000000001, 1.08413)


def test_a_bye_code_outside_the_table_is_read_as_any_bye() -> None:
    """§2.3: a receiver MUST accept a ``code`` it does not know (a later version's)."""
    for decode in (codec.decode_for_bridge, codec.decode_for_terminal):
        bye = decode(b'{"type":"bye","reason":"moving house","code":"x-relocating"}')
        assert isinstance(bye, m.Bye) and bye.code == "x-relocating"


# --- §15: the MUST table -----------------------------------------------------------------------

_ROW = re.compile(r"^\| ([0-9.]+) \| \"(.+?)\" \| (.+?) \| (.+?) \|$", re.M)
_TEST = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)`")


def _must_rows() -> list[tuple[str, str, str, str]]:
    return _ROW.findall(SPEC[SPEC.index("## 15. Conformance") :])


def test_the_must_table_quotes_the_text_and_names_tests_that_exist() -> None:
    rows = _must_rows()
    body = " ".join(SPEC[: SPEC.index("## 15. Conformance")].split())
    assert len(rows) >= 29
    for section, quoted, bridge, sim in rows:
        assert " ".join(quoted.split()) in body, f"§{section}: {quoted!r} is not in the text"
        for path, name in _TEST.findall(bridge + " " + sim):
            source = (ROOT / path).read_text()
            assert re.search(rf"^(async )?def {name}\(", source, re.M), f"{path}::{name}"


def test_every_must_of_the_text_has_a_row() -> None:
    """Each sentence of §1-§14 with MUST is quoted by a row (the key-word paragraph aside)."""
    text = SPEC[SPEC.index("## 1. Scope") : SPEC.index("## 15. Conformance")]
    flat = " ".join(text.split())
    quoted = [" ".join(q.split()) for _, q, _, _ in _must_rows()]
    positions = [flat.index(q) for q in quoted]
    musts = [m_.start() for m_ in re.finditer(r"\bMUST\b", flat)]
    # Every MUST lies within 200 characters after the start of some quoted phrase.
    uncovered = [
        flat[max(0, at - 60) : at + 40]
        for at in musts
        if not any(0 <= at - p <= 200 for p in positions)
    ]
    assert not uncovered, uncovered
