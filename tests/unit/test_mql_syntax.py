"""The syntax gate over every MQL source: each parses with tree-sitter's C++ grammar once the
MQL-only syntax is handled by rule, and has no ERROR or MISSING node.

What it proves is syntax only: that the file is a well-formed C++-like translation unit. Types
and the builtins' signatures are the signature gate's (tests/unit/test_mql_core.py: g++
through the prelude); only MetaEditor proves the file compiles as MQL (mql/README.md)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tree_sitter
import tree_sitter_cpp

from mtgate.mql_lint import sources

ROOT = Path(__file__).resolve().parents[2]
_PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_cpp.language()))

# MQL-only syntax, each rule keeping offsets (replaced by as many spaces):
# - the storage classes ``input`` and ``sinput`` of an EA's parameters;
# - colour and date literals (C'...', D'...') are not used in the project's sources: refused.
_STORAGE = re.compile(rb"^(\s*)(sinput|input)\b", re.M)
_LITERAL = re.compile(rb"\b[CD]'[^'\n]*'")


def mql_as_cpp(source: bytes) -> bytes:
    if _LITERAL.search(source):
        raise ValueError("colour/date literals (C'..', D'..') are not used in mtgate's MQL")
    return _STORAGE.sub(lambda m: m.group(1) + b" " * len(m.group(2)), source)


def syntax_errors(source: bytes) -> list[str]:
    tree = _PARSER.parse(mql_as_cpp(source))
    out: list[str] = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            row, col = node.start_point
            out.append(
                f"{row + 1}:{col + 1}: {'missing' if node.is_missing else 'error'} {node.type}"
            )
        stack.extend(node.children)
    return sorted(out)


def _mql_files() -> list[Path]:
    return list(sources(ROOT / "mql"))


def test_there_are_sources_to_check() -> None:
    assert len(_mql_files()) >= 6


@pytest.mark.parametrize("path", _mql_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_mql_source_parses(path: Path) -> None:
    assert syntax_errors(path.read_bytes()) == []


@pytest.mark.parametrize(
    "bad",
    [
        b"void f( { }",
        b"int x = ;",
        b"class A { int m; ",
        b"bool g(uchar &a[]) { return a[0] == ; }",
    ],
)
def test_the_gate_refuses_broken_code(bad: bytes) -> None:
    assert syntax_errors(bad) != []


def test_mql_parameters_and_properties_pass_by_rule() -> None:
    source = (
        b'#property strict\n#property version "1.00"\n'
        b'input string BridgeHost = "127.0.0.1";\nsinput int BridgePort = 7788;\n'
        b"int OnInit() { return(INIT_SUCCEEDED); }\n"
        b"bool Read(uchar &buf[], int n) { return ArraySize(buf) >= n; }\n"
    )
    assert syntax_errors(source) == []
    assert mql_as_cpp(b"input int X = 1;") == b"      int X = 1;"


def test_colour_and_date_literals_are_refused() -> None:
    with pytest.raises(ValueError, match="literals"):
        syntax_errors(b"color c = C'255,0,0';")
