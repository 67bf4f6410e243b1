"""The golden vectors other implementations check themselves against (mql/vectors/golden.json):
the committed file is what the protocol's code makes, and its values follow from the protocol
text alone (recomputed here with nothing but hmac/hashlib)."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

from mtgate.protocol import codec, vectors

GOLDEN = Path(__file__).parents[2] / "mql" / "vectors" / "golden.json"


def _hmac(key: bytes, text: bytes) -> str:
    return hmac.new(key, text, hashlib.sha256).hexdigest()


def test_the_committed_vectors_are_current() -> None:
    assert GOLDEN.read_text() == vectors.render(), (
        "regenerate: python -m mtgate.protocol.vectors > mql/vectors/golden.json"
    )


def test_every_value_follows_from_the_protocol_text() -> None:
    g = json.loads(GOLDEN.read_text())
    key = bytes.fromhex(g["key_hex"])
    tid, ea, br = g["terminal_id"], g["ea_nonce"], g["bridge_nonce"]
    assert g["proofs"]["bridge"] == _hmac(key, f"mtgate/1 bridge|{tid}|{ea}|{br}".encode())
    assert g["proofs"]["ea"] == _hmac(key, f"mtgate/1 ea|{tid}|{ea}|{br}".encode())
    hello, welcome = (hashlib.sha256(f["json"].encode()).hexdigest() for f in g["exchange"][:2])
    text = f"mtgate/2 session|{tid}|{ea}|{br}|{hello}|{welcome}".encode()
    frames_key = bytes.fromhex(_hmac(key, text))
    assert g["session"]["key_hex"] == frames_key.hex()
    seq = {"bridge>ea": 0, "ea>bridge": 0}
    for frame in g["exchange"]:
        wire = bytes.fromhex(frame["wire_hex"])
        assert int.from_bytes(wire[:4], "big") == len(wire) - 4
        body = wire[4:]
        if not frame["sealed"]:
            assert body.decode() == frame["json"]
            continue
        direction = frame["direction"]
        mac, number, text = body[:64], body[64:80], body[80:]
        assert number == b"%016x" % seq[direction]
        label = g["session"]["labels"][direction].encode()
        assert mac.decode() == _hmac(frames_key, label + number + text)
        assert text.decode() == frame["json"]
        seq[direction] += 1
    assert seq == {"bridge>ea": 4, "ea>bridge": 1}
    for n in g["nonces"]:
        text = f"mtgate/2 nonce|{tid}|{n['counter']}|{n['entropy']}".encode()
        assert n["nonce"] == _hmac(key, text)[:32]


def test_the_json_cases_hold_on_both_receivers_codecs() -> None:
    g = json.loads(GOLDEN.read_text())
    assert len(g["json"]) >= 15
    for case in g["json"]:
        body = bytes.fromhex(case["body_hex"])
        decode = (
            codec.decode_for_bridge if case["receiver"] == "bridge" else codec.decode_for_terminal
        )
        try:
            decode(body)
            got = "ok"
        except codec.ProtocolError as exc:
            got = exc.code
        expected = "ok" if case["outcome"] == "ok_envelope" else case["outcome"]
        assert got == expected, case["name"]
