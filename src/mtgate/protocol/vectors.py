"""Golden vectors of the wire protocol, for every implementation of the terminal side.

``python -m mtgate.protocol.vectors > mql/vectors/golden.json`` writes them; a test checks that
the committed file is what this module makes, so it cannot drift from the protocol's code. The
MQL self-test scripts and the C++ harness read the same file.

- ``proofs``: docs/protocol.md §3.4; ``session``: §3.5 (the frame key and sealed frames);
- ``exchange``: the §14 example, each frame as it is on the wire (hex) and as JSON;
- ``nonces``: the keyed-PRF nonce of §3.2;
- ``json``: bodies a receiver must take or refuse, each with the outcome written here by hand
  (``ok``, or the ``bye`` code); building the file checks the codec agrees with every one.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Final

from mtgate.protocol import auth, codec
from mtgate.protocol import messages as m

KEY_HEX: Final = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
TERMINAL_ID: Final = "ftmo-01"
EA_NONCE: Final = "3f9c0a7d52e14b8c9a6f0e1d2c3b4a59"
BRIDGE_NONCE: Final = "b7e2c41f09d83a6e5f1c2b3a4d5e6f70"

_EXCHANGE: Final[list[tuple[str, m.Message]]] = [
    ("ea>bridge", m.Hello(v=m.PROTOCOL_VERSION, platform="mt5", build=4755, login=51234567,
                          server="ICMarketsSC-Demo", company="Raw Trading Ltd", currency="USD",
                          leverage=500, margin_mode=2, terminal_id=TERMINAL_ID,
                          ea_version="1.0.0", nonce=EA_NONCE)),
    ("bridge>ea", m.Welcome(v=m.PROTOCOL_VERSION, nonce=BRIDGE_NONCE,
                            proof=auth.bridge_proof(auth.Secret.from_hex(KEY_HEX), TERMINAL_ID,
                                                    EA_NONCE, BRIDGE_NONCE),
                            session="s17", heartbeat_ms=1000)),
    ("ea>bridge", m.Auth(proof=auth.ea_proof(auth.Secret.from_hex(KEY_HEX), TERMINAL_ID,
                                             EA_NONCE, BRIDGE_NONCE))),
    ("bridge>ea", m.Ready()),
    ("bridge>ea", m.MarketOrder(id=1, symbol="EURUSD", order_type=0, volume=0.1,
                                magic=20250101, comment="mg:618B8D9F3A8058C4", deviation=10,
                                sl=1.08, tp=1.09)),
    ("bridge>ea", m.Ping(t_ms=5230117)),
    ("ea>bridge", m.Pong(t_ms=5230117)),
    ("bridge>ea", m.Bye(reason="bridge stopping", code="shutdown")),
]  # fmt: skip

# (name, receiver, body, outcome): "ok" or the bye code the receiver answers.
_JSON: Final[list[tuple[str, str, bytes, str]]] = [
    ("exponent-floats", "bridge",
     b'{"type":"res","id":1,"ok":true,"result":{"symbol":"EURUSD","bid":1.0841000000000001e+00,'
     b'"ask":108413E-5,"time_ms":1}}', "ok"),
    ("members-in-any-order", "terminal", b'{"t_ms":7,"type":"ping"}', "ok"),
    ("escaped-surrogate-pair", "bridge", b'{"type":"bye","reason":"\\ud83d\\ude00"}', "ok"),
    ("duplicate-member-last-wins", "terminal",
     b'{"type":"market_order","id":1,"symbol":"EURUSD","order_type":0,"volume":0.01,'
     b'"volume":50,"magic":1,"comment":""}', "ok"),
    ("lone-surrogate-escape", "bridge", b'{"type":"bye","reason":"\\ud800"}', "bad_json"),
    ("empty-body", "bridge", b"", "bad_json"),
    ("not-json", "bridge", b"{nope}", "bad_json"),
    ("invalid-utf8", "bridge", b'{"type":"bye","reason":"\xff"}', "bad_json"),
    ("not-an-object", "bridge", b"[]", "invalid_message"),
    ("unknown-type", "terminal", b'{"type":"market_order2","id":1}', "invalid_message"),
    ("unknown-member", "terminal", b'{"type":"ping","t_ms":1,"extra":1}', "invalid_message"),
    ("fraction-in-an-integer", "terminal", b'{"type":"ping","t_ms":1.5}', "invalid_message"),
    ("integer-beyond-64-bits", "terminal", b'{"type":"ping","t_ms":9223372036854775808}',
     "invalid_message"),
    ("float-overflow", "bridge",
     b'{"type":"res","id":1,"ok":true,"result":{"symbol":"EURUSD","bid":1e400,"ask":1,'
     b'"time_ms":1}}', "ok_envelope"),
    ("missing-member", "terminal", b'{"type":"ping"}', "invalid_message"),
]  # fmt: skip
"""``ok_envelope``: the frame decodes; its payload is refused when read (``invalid_message``)."""

_NONCE_INPUTS: Final = (
    (0, ""),
    (1, "us=123456789|local=1767225600|gmt=1767218400"),
    (2**64 - 1, "x"),
)


def _outcome(receiver: str, body: bytes) -> str:
    decode = codec.decode_for_bridge if receiver == "bridge" else codec.decode_for_terminal
    try:
        msg = decode(body)
    except codec.ProtocolError as exc:
        return exc.code
    if isinstance(msg, m.Response) and msg.ok and msg.result is not None:
        try:
            codec.decode_result(m.GetTick, msg.result)
        except codec.ProtocolError as exc:
            return "ok_envelope" if exc.code == "invalid_message" else exc.code
    return "ok"


def build() -> dict[str, Any]:
    """The vectors. Raises AssertionError if the codec disagrees with a hand-written outcome."""
    key = auth.Secret.from_hex(KEY_HEX)
    hello, welcome = (codec.encode(msg)[codec.HEADER_BYTES :] for _, msg in _EXCHANGE[:2])
    frames_key = auth.session_key(key, TERMINAL_ID, EA_NONCE, BRIDGE_NONCE, hello, welcome)
    seals = {
        "bridge>ea": auth.FrameSeal(frames_key, auth.TO_EA),
        "ea>bridge": auth.FrameSeal(frames_key, auth.TO_BRIDGE),
    }
    exchange: list[dict[str, Any]] = []
    sealed = False
    for direction, msg in _EXCHANGE:
        frame = codec.encode(msg)
        body = frame[codec.HEADER_BYTES :]
        if sealed:
            body = seals[direction].seal(body)
        wire = len(body).to_bytes(4, "big") + body
        exchange.append(
            {
                "direction": direction,
                "json": frame[codec.HEADER_BYTES :].decode(),
                "sealed": sealed,
                "wire_hex": wire.hex(),
            }
        )
        sealed = sealed or isinstance(msg, m.Auth)
    cases = []
    for name, receiver, body, expected in _JSON:
        got = _outcome(receiver, body)
        assert got == expected, f"json case {name}: the codec says {got}, the vectors {expected}"
        cases.append({"name": name, "receiver": receiver, "body_hex": body.hex(),
                      "outcome": expected})  # fmt: skip
    return {
        "protocol_version": m.PROTOCOL_VERSION,
        "max_frame_bytes": m.MAX_FRAME_BYTES,
        "seal_bytes": auth.SEAL_BYTES,
        "key_hex": KEY_HEX,
        "terminal_id": TERMINAL_ID,
        "ea_nonce": EA_NONCE,
        "bridge_nonce": BRIDGE_NONCE,
        "proofs": {
            "bridge": auth.bridge_proof(key, TERMINAL_ID, EA_NONCE, BRIDGE_NONCE),
            "ea": auth.ea_proof(key, TERMINAL_ID, EA_NONCE, BRIDGE_NONCE),
        },
        "session": {
            "key_hex": frames_key.hex(),
            "labels": {"bridge>ea": auth.TO_EA, "ea>bridge": auth.TO_BRIDGE},
        },
        "exchange": exchange,
        "nonces": [
            {
                "counter": n,
                "entropy": entropy,
                "nonce": auth.prf_nonce(key, TERMINAL_ID, n, entropy),
            }
            for n, entropy in _NONCE_INPUTS
        ],
        "json": cases,
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=True) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
