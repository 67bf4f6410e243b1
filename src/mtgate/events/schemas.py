"""One JSON Schema per event type, from the structs the events are made of (docs/events.md).

``python -m mtgate.events.schemas docs/events`` writes them; a test checks the committed files
are current and validates emitted events against them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from mtgate.events.builders import (
    AccountSyncedData,
    AlertData,
    OrderEventData,
    PositionEventData,
    SwitchData,
    TerminalEventData,
)
from mtgate.events.model import EventType

T = EventType
DATA: dict[EventType, type[msgspec.Struct]] = {
    **{t: OrderEventData for t in T if t.value.startswith("execution.order.")},
    **{t: PositionEventData for t in T if t.value.startswith("execution.position.")},
    T.PENDING_CHANGED: PositionEventData,
    T.ACCOUNT_SYNCED: AccountSyncedData,
    T.TERMINAL_CONNECTED: TerminalEventData,
    T.TERMINAL_DISCONNECTED: TerminalEventData,
    T.TERMINAL_DOWN: AlertData,
    T.TERMINAL_UP: AlertData,
    T.ALERT_RAISED: AlertData,
    T.ALERT_CLEARED: AlertData,
    T.ACCOUNT_SWITCHED: SwitchData,
}
"""The ``data`` of each type."""


def _envelope(type_: EventType, data: type[msgspec.Struct]) -> type[msgspec.Struct]:
    fields: list[tuple[str, Any]] = [
        ("id", str),
        ("seq", int),
        ("type", str),
        ("at", str),
        ("key", str),
        ("account", str | None),
        ("terminal_id", str | None),
        ("data", data),
    ]
    return msgspec.defstruct("Envelope", fields, frozen=True, forbid_unknown_fields=True)


def schema(type_: EventType) -> dict[str, Any]:
    """The JSON Schema (2020-12) of one event type's envelope."""
    found = msgspec.json.schema(_envelope(type_, DATA[type_]))
    defs = found.get("$defs", {})
    root = defs.pop("Envelope")
    root["properties"]["type"] = {"const": type_.value}
    root["properties"]["id"] = {"type": "string", "format": "uuid"}
    root["properties"]["seq"] = {"type": "integer", "minimum": 1}
    root["properties"]["at"] = {"type": "string", "format": "date-time"}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://mtgate.dev/schemas/events/{type_.value}.json",
        "title": type_.value,
        **root,
        "$defs": defs,
    }


def render(type_: EventType) -> str:
    return json.dumps(schema(type_), indent=2, sort_keys=True) + "\n"


def write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for t in EventType:
        path = directory / f"{t.value}.json"
        path.write_text(render(t))
        out.append(path)
    return out


if __name__ == "__main__":
    for written in write(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/events")):
        print(written)
