"""The position API's one exception."""

from __future__ import annotations

from mtgate.execution.validation import Refusal


class PositionError(Exception):
    """A position operation refused before anything was sent or journalled."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal
