"""The MQL5 EA's pure-logic core (mql/MQL5/Include/mtgate/*.mqh), compiled as C++17 through
mql/cpp/mql5_prelude.h and run by mql/cpp/harness.cpp, against the golden vectors
(mql/vectors/golden.json) and what mtgate.protocol computes: SHA-256/HMAC, the proofs, the
session key, every sealed frame of the example exchange, the PRF nonces, the seal's refusals
and the frame decoder.

What this proves and does not (mql/README.md): the core's logic against the prelude's model
of the MQL builtins. No MetaEditor runs here, so neither MQL's own compiler nor the
terminal's CryptEncode is exercised.

Without g++ the tests skip, except under CI=true, where they fail."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from mtgate.protocol import auth, codec

ROOT = Path(__file__).parents[2]
INCLUDE = ROOT / "mql" / "MQL5" / "Include"
CORE = INCLUDE / "mtgate"
CPP = ROOT / "mql" / "cpp"
PRELUDE = CPP / "mql5_prelude.h"
HARNESS = CPP / "harness.cpp"
GOLDEN = json.loads((ROOT / "mql" / "vectors" / "golden.json").read_text())

CORE_FILES = sorted(CORE.glob("*.mqh"))
# The flags the brief asks for, plus -Wextra -Wconversion: MetaEditor too warns on an
# implicit narrowing, so the core spells every one of them as a cast.
FLAGS = ["-std=c++17", "-Wall", "-Wextra", "-Wconversion", "-Werror"]

KEY = auth.Secret.from_hex(GOLDEN["key_hex"])
TID, EA_NONCE, BRIDGE_NONCE = GOLDEN["terminal_id"], GOLDEN["ea_nonce"], GOLDEN["bridge_nonce"]
K_S = bytes.fromhex(GOLDEN["session"]["key_hex"])
MIB = GOLDEN["max_frame_bytes"]
HANDSHAKE_LIMIT = 16384  # docs/protocol.md §13: frames before ready


def _gxx() -> str:
    found = shutil.which("g++")
    if found is None:
        reason = "g++ is not installed (Debian package g++): the MQL core cannot be compiled"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)
    return found


def _compile(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_gxx(), *FLAGS, "-I", str(INCLUDE), *args], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Path:
    exe = tmp_path_factory.mktemp("mql_core") / "harness"
    built = _compile(["-O1", "-I", str(CPP), str(HARNESS), "-o", str(exe)])
    assert built.returncode == 0, built.stderr
    return exe


def ask(exe: Path, cases: Sequence[tuple[str, ...]]) -> list[str]:
    """The harness's answer to each case (op, args...), in order."""
    lines = "".join("\t".join((str(i), *case)) + "\n" for i, case in enumerate(cases))
    proc = subprocess.run([str(exe)], input=lines, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    answers = dict(line.split("\t", 1) for line in proc.stdout.splitlines())
    assert sorted(answers, key=int) == [str(i) for i in range(len(cases))]
    return [answers[str(i)] for i in range(len(cases))]


def t(text: str) -> str:
    """A string argument: the hex of its UTF-8."""
    return text.encode().hex()


def wire(frame: dict[str, object]) -> bytes:
    return bytes.fromhex(str(frame["wire_hex"]))


def py_open(seal: auth.FrameSeal, body: bytes) -> str:
    """auth.FrameSeal.open's outcome in the harness's notation."""
    try:
        return "0:" + seal.open(body).hex()
    except auth.FrameAuthError as exc:
        return {"bad_mac": "1", "out_of_order": "2"}[exc.code]


def py_decode(limit: int, switch_after: int, limit2: int, chunk: int, stream: bytes) -> str:
    """codec.FrameDecoder's split of stream fed chunk bytes at a time, in the harness's
    notation (the limit changed after switch_after bodies: exact for chunk=1)."""
    decoder = codec.FrameDecoder(limit)
    bodies: list[str] = []
    try:
        for at in range(0, len(stream), chunk):
            for body in decoder.feed(stream[at : at + chunk]):
                bodies.append(body.hex() or "-")
                if len(bodies) == switch_after:
                    decoder.max_frame = limit2
    except codec.ProtocolError as exc:
        if exc.code != "frame_too_large":
            raise
        return ",".join(bodies) + ";too_large"
    return ",".join(bodies) + f";pending={decoder.buffered}"


def header(n: int) -> bytes:
    return n.to_bytes(4, "big")


# --- SHA-256, HMAC, hex ----------------------------------------------------------------------


def test_sha256_and_hmac_agree_with_hashlib_at_every_padding_boundary(harness: Path) -> None:
    datas = [bytes((7 * i + 3) & 255 for i in range(n)) for n in [*range(200), 1000, 65536]]
    datas.append(b"abc")
    keys = [bytes(range(n)) for n in (0, 1, 31, 32, 63, 64, 65, 100, 200)]
    messages = [b"\x5a" * n for n in (0, 1, 55, 56, 64, 65, 300)]
    cases: list[tuple[str, ...]] = [("sha256", d.hex()) for d in datas]
    cases += [("hmac", k.hex(), m.hex()) for k in keys for m in messages]
    cases += [("hex", d.hex()) for d in datas[:70]]
    expected = [hashlib.sha256(d).hexdigest() for d in datas]
    expected += [hmac.new(k, m, hashlib.sha256).hexdigest() for k in keys for m in messages]
    expected += [d.hex() for d in datas[:70]]
    assert ask(harness, cases) == expected


def test_hex_decoding_takes_even_hex_of_either_case_and_nothing_else(harness: Path) -> None:
    texts = ["", "00", "0aFf", "DEADbeef", GOLDEN["key_hex"], "abc", "zz", "0x12", " 12", "1g"]
    answers = ask(harness, [("unhex", t(s)) for s in texts])
    for text, got in zip(texts, answers, strict=True):
        if re.fullmatch(r"(?:[0-9a-fA-F]{2})*", text):
            assert got == "ok:" + bytes.fromhex(text).hex(), text
        else:
            assert got == "refused", text


# --- proofs, session key, nonces (docs/protocol.md §3.4, §3.5, §3.2) ---------------------------


def test_the_proofs_are_the_golden_ones_and_those_of_auth(harness: Path) -> None:
    rng = random.Random(20250101)
    inputs = [(KEY, TID, EA_NONCE, BRIDGE_NONCE)]
    for n in (32, 64, 65, 100):
        key = auth.Secret(rng.randbytes(n))
        tid = rng.choice(["ftmo-01", "a", "x" * 64, "Demo.Terminal_2"])
        inputs.append((key, tid, rng.randbytes(16).hex(), rng.randbytes(16).hex()))
    cases: list[tuple[str, ...]] = []
    expected: list[str] = []
    for key, tid, ea, br in inputs:
        args = (key.reveal().hex(), t(tid), t(ea), t(br))
        cases += [("bridge_proof", *args), ("ea_proof", *args)]
        cases += [("proof", t("bridge"), *args), ("proof", t("ea"), *args)]
        bridge, ea_p = auth.bridge_proof(key, tid, ea, br), auth.ea_proof(key, tid, ea, br)
        expected += [bridge, ea_p, bridge, ea_p]
    answers = ask(harness, cases)
    assert answers[:2] == [GOLDEN["proofs"]["bridge"], GOLDEN["proofs"]["ea"]]
    assert answers == expected


def test_the_session_key_is_the_golden_one_and_covers_both_bodies(harness: Path) -> None:
    hello, welcome = (wire(f)[4:] for f in GOLDEN["exchange"][:2])
    stripped = welcome.replace(b',"heartbeat_ms":1000', b',"heartbeat_ms":2000')
    assert stripped != welcome
    pairs = [(hello, welcome), (hello, stripped), (welcome, hello)]
    cases = [
        ("session_key", KEY.reveal().hex(), t(TID), t(EA_NONCE), t(BRIDGE_NONCE), h.hex(), w.hex())
        for h, w in pairs
    ]
    expected = [auth.session_key(KEY, TID, EA_NONCE, BRIDGE_NONCE, h, w).hex() for h, w in pairs]
    answers = ask(harness, cases)
    assert answers[0] == GOLDEN["session"]["key_hex"]
    assert answers == expected
    assert len(set(answers)) == 3


def test_the_nonces_are_the_golden_ones_and_those_of_auth(harness: Path) -> None:
    inputs = [(TID, n["counter"], n["entropy"]) for n in GOLDEN["nonces"]]
    inputs += [
        (TID, 2**63, ""),
        (TID, 10**19, "us=1|local=2|gmt=3"),
        ("other-terminal", 7, "entropy with non-ASCII: \u00e9\u20ac\U0001f600"),
    ]
    cases = [("nonce", KEY.reveal().hex(), t(tid), str(c), t(e)) for tid, c, e in inputs]
    answers = ask(harness, cases)
    assert answers[: len(GOLDEN["nonces"])] == [n["nonce"] for n in GOLDEN["nonces"]]
    assert answers == [auth.prf_nonce(KEY, tid, c, e) for tid, c, e in inputs]
    assert len(set(answers)) == len(answers)
    texts = [*answers, EA_NONCE.upper(), EA_NONCE[:31], EA_NONCE + "0", "g" * 32, ""]
    checked = ask(harness, [("valid_nonce", t(s)) for s in texts])
    assert checked == ["1" if auth.valid_nonce(s) else "0" for s in texts]
    assert checked.count("1") == len(answers)


def test_hex_comparison_is_equality_of_the_texts(harness: Path) -> None:
    p = GOLDEN["proofs"]["bridge"]

    def other(c: str) -> str:
        return "1" if c == "0" else "0"

    pairs = [
        (p, p),
        ("", ""),
        (p, other(p[0]) + p[1:]),
        (p, p[:-1] + other(p[-1])),
        (p, p[:-1]),
        (p, p.upper()),
        (p, GOLDEN["proofs"]["ea"]),
    ]
    answers = ask(harness, [("hexeq", t(a), t(b)) for a, b in pairs])
    assert answers == ["1" if auth.proofs_match(a, b) else "0" for a, b in pairs]
    assert answers == ["1", "1", "0", "0", "0", "0", "0"]


# --- frames and seals (docs/protocol.md §2.1, §3.5, §14) ------------------------------------


def test_every_frame_of_the_exchange_is_the_golden_one(harness: Path) -> None:
    labels = GOLDEN["session"]["labels"]
    cases: list[tuple[str, ...]] = []
    expected: list[str] = []
    for direction, label in labels.items():
        cases.append(("seal_new", "tx " + direction, K_S.hex(), t(label)))
        cases.append(("seal_new", "rx " + direction, K_S.hex(), t(label)))
        expected += ["ok", "ok"]
    sealed = 0
    for frame in GOLDEN["exchange"]:
        body = wire(frame)[4:]
        text = frame["json"].encode()
        if frame["sealed"]:
            sealed += 1
            cases.append(("seal", "tx " + frame["direction"], text.hex()))
            cases.append(("open", "rx " + frame["direction"], body.hex()))
            cases.append(("frame", str(MIB), body.hex()))
            expected += [body.hex(), "0:" + text.hex(), frame["wire_hex"]]
        else:
            assert body == text
            cases.append(("frame", str(HANDSHAKE_LIMIT), text.hex()))
            expected.append(frame["wire_hex"])
    cases += [("seal_next", "tx bridge>ea"), ("seal_next", "rx ea>bridge")]
    expected += ["4", "1"]
    assert sealed == 5
    assert ask(harness, cases) == expected


def test_a_seal_is_that_of_auth_for_a_frame_not_in_the_exchange(harness: Path) -> None:
    ping = b'{"type":"ping","t_ms":1700000000000}'
    empty = b""
    ref = auth.FrameSeal(K_S, auth.TO_BRIDGE)
    expected = ["ok", ref.seal(ping).hex(), ref.seal(empty).hex()]
    cases = [("seal_new", "tx", K_S.hex(), t(auth.TO_BRIDGE)), ("seal", "tx", ping.hex())]
    cases.append(("seal", "tx", empty.hex()))
    answers = ask(harness, cases)
    assert answers == expected
    # docs/protocol.md §3.5's test vector: the EA's ping, frame 0.
    assert bytes.fromhex(answers[1]).startswith(b"288e7bd503dac06e4e88ee95134ee78a")


def test_open_refuses_tampered_bodies_as_auth_does(harness: Path) -> None:
    label = auth.TO_EA
    sender = auth.FrameSeal(K_S, label)
    jsons = [b'{"type":"ready"}', b'{"type":"ping","t_ms":1}', b'{"type":"ping","t_ms":2}']
    b0, b1, b2 = (sender.seal(j) for j in jsons)

    def body_at(seq_hex: bytes, text: bytes, *, mac_upper: bool = False) -> bytes:
        mac = hmac.new(K_S, label.encode() + seq_hex + text, hashlib.sha256).hexdigest()
        return (mac.upper() if mac_upper else mac).encode() + seq_hex + text

    flipped_mac = bytearray(b0)
    flipped_mac[5] = ord("0") if flipped_mac[5] != ord("0") else ord("1")
    flipped_last = bytearray(b0)
    flipped_last[63] = ord("0") if flipped_last[63] != ord("0") else ord("1")
    flipped_json = bytearray(b0)
    flipped_json[-2] ^= 0x01
    other_direction = auth.FrameSeal(K_S, auth.TO_BRIDGE).seal(jsons[0])
    steps: list[tuple[str, bytes | int]] = [
        ("flipped MAC char", bytes(flipped_mac)),
        ("flipped last MAC char", bytes(flipped_last)),
        ("79 bytes", b0[:79]),
        ("flipped JSON byte", bytes(flipped_json)),
        ("sealed for the other direction", other_direction),
        ("frame 0", b0),
        ("frame 0 replayed", b0),
        ("frame 0 replayed with a flipped MAC char", bytes(flipped_mac)),
        ("frame 2 before 1", b2),
        ("frame 1", b1),
        ("jump", 10),
        ("uppercase seq hex", body_at(b"000000000000000A", jsons[1])),
        ("lowercase seq hex", body_at(b"000000000000000a", jsons[1])),
        ("uppercase MAC", body_at(b"000000000000000b", jsons[2], mac_upper=True)),
        ("80 bytes, empty JSON", body_at(b"000000000000000b", b"")),
        ("jump", 2**64 - 1),
        ("the last frame", body_at(b"ffffffffffffffff", jsons[0])),
        ("the last frame replayed", body_at(b"ffffffffffffffff", jsons[0])),
        ("a frame after the last", body_at(b"0000000000000000", jsons[0])),
    ]
    receiver = auth.FrameSeal(K_S, label)
    cases: list[tuple[str, ...]] = [("seal_new", "rx", K_S.hex(), t(label))]
    expected = ["ok"]
    for _, step in steps:
        if isinstance(step, int):
            receiver.seq = step
            cases.append(("seal_setseq", "rx", str(step)))
            expected.append("ok")
        else:
            cases.append(("open", "rx", step.hex()))
            expected.append(py_open(receiver, step))
    cases.append(("seal_next", "rx"))
    expected.append(f"{2**64 - 1}+exhausted")
    answers = ask(harness, cases)
    assert answers == expected
    opened = {
        name: answers[i + 1] for i, (name, step) in enumerate(steps) if not isinstance(step, int)
    }
    assert opened["flipped MAC char"] == "1"
    assert opened["flipped last MAC char"] == "1"
    assert opened["79 bytes"] == "1"
    assert opened["uppercase seq hex"] == "1"
    assert opened["lowercase seq hex"].startswith("0:")
    assert opened["uppercase MAC"] == "1"
    assert opened["frame 0"].startswith("0:")
    assert opened["frame 0 replayed"] == "2"
    assert opened["frame 0 replayed with a flipped MAC char"] == "1"  # the MAC is checked first
    assert opened["80 bytes, empty JSON"] == "0:"
    assert opened["the last frame replayed"] == "2"


def test_sequence_numbers_end_at_2_64_minus_1_and_never_wrap(harness: Path) -> None:
    ref = auth.FrameSeal(K_S, auth.TO_EA)
    ref.seq = 2**64 - 2
    text = b'{"type":"ready"}'
    last_two = [ref.seal(text).hex(), ref.seal(text).hex()]
    with pytest.raises(auth.FrameAuthError):
        ref.seal(text)
    cases = [
        ("seal_new", "tx", K_S.hex(), t(auth.TO_EA)),
        ("seal_setseq", "tx", str(2**64 - 2)),
        ("seal", "tx", text.hex()),
        ("seal", "tx", text.hex()),
        ("seal", "tx", text.hex()),
        ("seal_next", "tx"),
    ]
    answers = ask(harness, cases)
    assert answers == ["ok", "ok", *last_two, "refused", f"{2**64 - 1}+exhausted"]
    assert bytes.fromhex(last_two[1])[64:80] == b"ffffffffffffffff"


def test_the_encoder_writes_the_header_and_refuses_a_body_over_the_limit(harness: Path) -> None:
    bodies = [(HANDSHAKE_LIMIT, b""), (HANDSHAKE_LIMIT, b"x" * HANDSHAKE_LIMIT)]
    bodies += [(HANDSHAKE_LIMIT, b"x" * (HANDSHAKE_LIMIT + 1)), (MIB, b"y" * MIB)]
    bodies.append((MIB, b"y" * (MIB + 1)))
    answers = ask(harness, [("frame", str(limit), b.hex()) for limit, b in bodies])
    expected = [(header(len(b)) + b).hex() if len(b) <= limit else "refused" for limit, b in bodies]
    assert answers == expected
    assert answers[0] == "00000000"
    assert answers.count("refused") == 2


def test_the_decoder_splits_a_stream_fed_one_byte_at_a_time(harness: Path) -> None:
    stream = b"".join(wire(f) for f in GOLDEN["exchange"]) + header(0) + header(7)[:2]
    chunks = [1, 2, 3, 5, 64, len(stream)]
    cases = [("decode", str(MIB), "-1", "0", str(c), stream.hex()) for c in chunks]
    answers = ask(harness, cases)
    bodies = [wire(f)[4:].hex() for f in GOLDEN["exchange"]]
    whole = ",".join([*bodies, "-"]) + ";pending=2"
    assert answers == [whole] * len(chunks)
    assert answers == [py_decode(MIB, -1, 0, c, stream) for c in chunks]


def test_the_decoder_refuses_an_oversized_header_before_its_body(harness: Path) -> None:
    ready = header(16) + b'{"type":"ready"}'
    big = b"z" * 20000
    streams = [
        # (limit, switch_after, limit2, chunk, stream)
        (HANDSHAKE_LIMIT, -1, 0, 1, header(HANDSHAKE_LIMIT + 1)),
        (HANDSHAKE_LIMIT, -1, 0, 1, ready + header(HANDSHAKE_LIMIT + 1) + b"{}"),
        (HANDSHAKE_LIMIT, -1, 0, 1, header(HANDSHAKE_LIMIT) + b"h" * HANDSHAKE_LIMIT),
        (MIB, -1, 0, 4096, header(MIB + 1) + b"m" * 4096),
        (MIB, -1, 0, 4096, header(MIB) + b"m" * MIB),
        (MIB, -1, 0, 1, header(0xFFFFFFFF)),
        # ready taken, the limit raised to 1 MiB, then a frame over 16 KiB
        (HANDSHAKE_LIMIT, 1, MIB, 1, ready + header(len(big)) + big),
        (HANDSHAKE_LIMIT, -1, MIB, 1, ready + header(len(big)) + big),
    ]
    cases = [("decode", *(str(v) for v in s[:4]), s[4].hex()) for s in streams]
    answers = ask(harness, cases)
    assert answers == [py_decode(*s) for s in streams]
    assert [a.rsplit(";", 1)[1] for a in answers] == [
        "too_large",
        "too_large",
        "pending=0",
        "too_large",
        "pending=0",
        "too_large",
        "pending=0",
        "too_large",
    ]
    assert answers[0] == ";too_large"  # from the 4 header bytes alone
    assert answers[6] == f"{ready[4:].hex()},{big.hex()};pending=0"


# --- the signature gate and the common subset ----------------------------------------------


@pytest.mark.parametrize("mqh", CORE_FILES, ids=lambda p: p.name)
def test_signature_gate(mqh: Path) -> None:
    """The signature gate: each header compiles (g++ -fsyntax-only) on its own through the
    prelude. This proves that every builtin is called with the signature the prelude
    declares from the MQL5 documentation, and that each header includes what it uses;
    nothing more (not that MetaEditor accepts the file, nor how MQL behaves at run time)."""
    done = _compile(["-fsyntax-only", "-x", "c++", "-include", str(PRELUDE), str(mqh)])
    assert done.returncode == 0, done.stderr


def test_the_gate_covers_the_whole_core() -> None:
    assert [p.name for p in CORE_FILES] == [
        "Auth.mqh",
        "Bytes.mqh",
        "Compat.mqh",
        "Frame.mqh",
        "Hmac.mqh",
        "Sha256.mqh",
    ]


@pytest.mark.parametrize(
    ("snippet", "compiles"),
    [
        ("void F(MTG_ARG_OUT(uchar, a)) { ArrayResize(a, 1); }", True),
        ("void F(MTG_ARG_IN(uchar, a)) { ArrayResize(a, 1); }", False),
        ("void F(MTG_ARG_OUT(uchar, a)) { StringToCharArray(a, a); }", False),
        ("void F(MTG_ARG_OUT(uchar, a)) { ArrayCopy(a); }", False),
        ("string F(string s) { return s + 5; }", False),
        ("string F() { return IntegerToString(5); }", False),
        ("void F(MTG_ARG_OUT(uchar, a)) { a[0] = ArraySize(a); }", False),
    ],
    ids=[
        "control",
        "resize-const",
        "wrong-argument",
        "too-few-arguments",
        "number-to-string",
        "undeclared-builtin",
        "implicit-narrowing",
    ],
)
def test_the_gate_refuses_what_the_prelude_does_not_declare(
    tmp_path: Path, snippet: str, compiles: bool
) -> None:
    src = tmp_path / "snippet.mqh"
    src.write_text("#include <mtgate/Compat.mqh>\n" + snippet + "\n")
    done = _compile(["-fsyntax-only", "-x", "c++", "-include", str(PRELUDE), str(src)])
    assert (done.returncode == 0) is compiles, done.stderr


def test_the_mql_branch_spells_native_mql_arrays() -> None:
    """With __MQL5__ defined (as MetaEditor does), Compat.mqh's macros give MQL's own array
    spelling: MtgSha256 is `bool MtgSha256(const uchar &data[], uchar &digest[])`. Checked with
    the C preprocessor, not MetaEditor's."""
    for name, wanted in [
        ("Sha256.mqh", "bool MtgSha256(const uchar &data[], uchar &digest[])"),
        ("Frame.mqh", "uchar m_buf[];"),
        ("Auth.mqh", "uchar &session_key[])"),
    ]:
        done = subprocess.run(
            [_gxx(), "-E", "-P", "-D__MQL5__", "-x", "c++", "-I", str(INCLUDE), str(CORE / name)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert wanted in re.sub(r"\s+", " ", done.stdout), name
        assert "MqlArray" not in done.stdout


_FORBIDDEN = {
    "->": r"->",
    "std::": r"\bstd::",
    "new/delete": r"\b(?:new|delete)\b",
    "template": r"\b(?:template|typename)\b",
    "C++ casts": r"\b(?:static|reinterpret|const|dynamic)_cast\b",
    "C++ types": r"\b(?:unsigned|size_t|auto|nullptr|int64_t|uint8_t)\b",
    "input": r"\bs?input\b",
    "prelude helpers": r"\b(?:mtg_prelude|MqlArray|MqlString)\b",
    "native array spelling": r"\w\s*\[\s*\]",
    "#error/#pragma/#if": r"#\s*(?:error|pragma|if|elif)\b",
    "include outside mtgate/": r"#include\s*[<\"](?!mtgate/)",
}


def _code_of(path: Path) -> str:
    """The file without comments and string literals."""
    text = path.read_text()
    text = re.sub(r'"(?:\\.|[^"\\\n])*"', '""', text)
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def test_the_core_stays_in_the_common_subset() -> None:
    """No C++-only or MQL-only construct in the core (Compat.mqh alone spells the arrays both
    ways), ASCII only (MetaEditor's handling of UTF-8 sources is not known), and an include
    guard in each header."""
    assert CORE_FILES
    for path in CORE_FILES:
        assert path.read_bytes().isascii(), path.name
        code = _code_of(path)
        guard = "MTGATE_" + path.stem.upper() + "_MQH"
        assert f"#ifndef {guard}\n#define {guard}\n" in code, path.name
        for what, pattern in _FORBIDDEN.items():
            if path.name == "Compat.mqh" and what in ("prelude helpers", "native array spelling"):
                continue
            assert not re.search(pattern, code), f"{path.name}: {what}"
    assert re.search(_FORBIDDEN["native array spelling"], "void F(uchar &a[]) {}")
