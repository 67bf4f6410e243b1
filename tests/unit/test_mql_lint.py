"""The MQL lints catch each trap they name, ignore it in comments and strings, and the
project's MQL sources are clean."""

from __future__ import annotations

from pathlib import Path

from mtgate.mql_lint import blank_comments_and_strings, lint_text, lint_tree, sources

ROOT = Path(__file__).resolve().parents[2]


def _rules(text: str, name: str = "Experts/Ea.mq5") -> list[tuple[int, str]]:
    return [(f.line, f.rule) for f in lint_text(text, name)]


def test_a_socket_read_with_timeout_zero() -> None:
    text = "int n = SocketRead(sock, buf, 4, 0);\nint m = SocketRead(sock, buf, 4, 5);\n"
    assert _rules(text) == [(1, "socket-read-zero")]


def test_a_socket_read_with_nested_arguments_is_parsed_by_depth() -> None:
    text = "SocketRead(s, buf, MathMin(n, ArraySize(buf)), 0);\nSocketRead(s, b, f(1, 0), 2);"
    assert _rules(text) == [(1, "socket-read-zero")]


def test_sleep_in_a_handler_but_not_elsewhere() -> None:
    text = (
        "void Backoff() { Sleep(100); }\n"
        "void OnTimer()\n{\n  if (x) { Pump(); }\n  Sleep(5);\n}\n"
        "void OnTick() { Pump(); }\n"
    )
    assert _rules(text) == [(5, "sleep-in-handler")]


def test_mathrand_anywhere() -> None:
    assert _rules("string nonce = IntegerToString(MathRand());") == [(1, "mathrand-nonce")]


def test_trades_only_in_the_queue_and_its_operations() -> None:
    text = "bool ok = OrderSend(req, res);\nOrderSendAsync(req, res);\n"
    assert _rules(text, "Include/mtgate/Session.mqh") == [
        (1, "trade-outside-queue"),
        (2, "trade-outside-queue"),
    ]
    assert _rules(text, "Include/mtgate/TradeQueue.mqh") == []
    assert _rules("OrderClose(t, v, p, 3);", "Include/mtgate/Ops4.mqh") == []
    assert _rules("OrderSelect(t, SELECT_BY_TICKET);", "Experts/Ea.mq4") == []


def test_comments_and_strings_do_not_count() -> None:
    text = (
        "// never SocketRead(s, b, 4, 0) here\n"
        "/* MathRand() is banned\n   OrderSend(r, s) too */\n"
        'Print("OrderSend( failed; Sleep(1)");\n'
        "void OnTimer() { Print('x'); }\n"
    )
    assert _rules(text, "Experts/Ea.mq5") == []


def test_blanking_keeps_offsets_and_lines() -> None:
    text = 'a = "x\\"y"; // c\nb = 1; /* d\ne */ f();'
    blanked = blank_comments_and_strings(text)
    assert len(blanked) == len(text) and blanked.count("\n") == text.count("\n")
    assert "f();" in blanked and "x" not in blanked and "c" not in blanked.split("\n")[0]


def test_the_project_sources_are_clean() -> None:
    root = ROOT / "mql"
    assert len(list(sources(root))) >= 6  # the core's headers at least
    findings = lint_tree(root)
    assert not findings, "\n".join(map(str, findings))
    assert all(p.suffix in (".mq5", ".mq4", ".mqh") for p in sources(root))
