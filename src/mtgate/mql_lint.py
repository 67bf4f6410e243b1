"""Lints for the project's MQL sources: the traps the terminal-side research found in other
bridges' Expert Advisors (reference terminal-side.md §1-§3), each a rule over the text.

MetaEditor is the only MQL compiler and does not run here, so these are textual checks of what
a compiler would not catch anyway: calls that are legal and wrong. Comments and string
literals are blanked before matching, so a rule quoted in a comment does not trip it.

Rules:

- ``socket-read-zero``: ``SocketRead(..., 0)``. A timeout of 0 is the default 120 s, not
  "non-blocking": the EA would freeze for two minutes on an idle socket.
- ``sleep-in-handler``: ``Sleep`` inside ``OnTimer``, ``OnTick``, ``OnTradeTransaction`` or
  ``OnChartEvent``: it stalls the terminal's single event queue for the EA (every other
  handler, including the heartbeat), so a ping goes unanswered.
- ``mathrand-nonce``: ``MathRand`` anywhere: it is a 15-bit LCG seeded from the clock, never a
  nonce or key source (protocol §3.2 says how an EA makes its nonce).
- ``trade-outside-queue``: ``OrderSend``/``OrderSendAsync``/``OrderClose``/``OrderModify``/
  ``OrderDelete``/``OrderCloseBy`` outside the trade queue's file (``TradeQueue.mqh``) and the
  platform operations it calls (``Ops4.mqh``/``Ops5.mqh``): one trade at a time is the
  protocol's rule (§4.3 rule 1), and it holds only if nothing else trades.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

TRADE_FILES = frozenset({"TradeQueue.mqh", "Ops4.mqh", "Ops5.mqh"})
HANDLERS = ("OnTimer", "OnTick", "OnTradeTransaction", "OnChartEvent")
_TRADE_CALL = re.compile(
    r"\b(OrderSendAsync|OrderSend|OrderCloseBy|OrderClose|OrderModify|OrderDelete)\s*\("
)
_SOCKET_READ = re.compile(r"\bSocketRead\s*\(")
_SLEEP = re.compile(r"\bSleep\s*\(")
_MATHRAND = re.compile(r"\bMathRand\s*\(")
_HANDLER = re.compile(r"\b(?:void|int)\s+(" + "|".join(HANDLERS) + r")\s*\([^)]*\)\s*\{")


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}: {self.message}"


def blank_comments_and_strings(text: str) -> str:
    """``text`` with every comment and string or char literal replaced by spaces (newlines
    kept), so that offsets and line numbers stay those of the source."""
    out = list(text)
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            for k in range(i + 1, j - 1):  # keep the quotes, blank the inside
                if out[k] != "\n":
                    out[k] = " "
            i = j
            continue
        else:
            i += 1
            continue
        for k in range(i, j):
            if out[k] != "\n":
                out[k] = " "
        i = j
    return "".join(out)


def _args(code: str, open_paren: int) -> list[str]:
    """The top-level arguments of the call whose ``(`` is at ``open_paren``."""
    depth, start, args = 0, open_paren + 1, []
    for i in range(open_paren, len(code)):
        ch = code[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                args.append(code[start:i].strip())
                return args
        elif ch == "," and depth == 1:
            args.append(code[start:i].strip())
            start = i + 1
    return args


def _body_end(code: str, open_brace: int) -> int:
    depth = 0
    for i in range(open_brace, len(code)):
        if code[i] == "{":
            depth += 1
        elif code[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    return len(code)


def lint_text(text: str, name: str) -> list[Finding]:
    code = blank_comments_and_strings(text)

    def line(offset: int) -> int:
        return code.count("\n", 0, offset) + 1

    found: list[Finding] = []
    for mt in _SOCKET_READ.finditer(code):
        args = _args(code, mt.end() - 1)
        if len(args) >= 4 and args[3] in ("0", "0u", "0U"):
            found.append(Finding(name, line(mt.start()), "socket-read-zero",
                                 "SocketRead with timeout 0 waits the default 120 s"))  # fmt: skip
    for mt in _HANDLER.finditer(code):
        end = _body_end(code, mt.end() - 1)
        for sleep in _SLEEP.finditer(code, mt.end(), end):
            found.append(Finding(name, line(sleep.start()), "sleep-in-handler",
                                 f"Sleep inside {mt.group(1)} stalls the EA's event queue"))  # fmt: skip
    for mt in _MATHRAND.finditer(code):
        found.append(Finding(name, line(mt.start()), "mathrand-nonce",
                             "MathRand is no source of nonces or keys (protocol §3.2)"))  # fmt: skip
    if Path(name).name not in TRADE_FILES:
        for mt in _TRADE_CALL.finditer(code):
            found.append(Finding(name, line(mt.start()), "trade-outside-queue",
                                 f"{mt.group(1)} outside the trade queue (protocol §4.3 rule 1)"))  # fmt: skip
    return sorted(found, key=lambda f: (f.line, f.rule))


def sources(root: Path) -> Iterator[Path]:
    for pattern in ("*.mq5", "*.mq4", "*.mqh"):
        yield from sorted(root.rglob(pattern))


def lint_tree(root: Path, paths: Iterable[Path] | None = None) -> list[Finding]:
    out: list[Finding] = []
    for path in paths if paths is not None else sources(root):
        text = path.read_text(encoding="utf-8")
        out.extend(lint_text(text, str(path.relative_to(root))))
    return out
