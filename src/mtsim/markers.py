"""Comment markers MT4 servers write, and the deal reason an MT4 EA reads back from them.

MT4 has no deals: the EA synthesises one per trade event of a ticket and has nothing but the
ticket's comment and magic to say why it happened (docs/protocol.md §10 "Deals are
synthesised"). The server model writes the markers (:mod:`mtsim.ledger` for SL/TP,
:mod:`mtsim.stopout` for stop-outs) and derives every MT4 deal's reason from them with
:func:`mt4_deal_reason`, in one place (:func:`mtsim.ledger.record_deal`), so that a test sees
exactly the reason a protocol-following EA would report: never the server's own knowledge of
who closed the ticket. A manual close of a magic ≠ 0 ticket therefore reads as EXPERT, and an
EA close of a magic-0 ticket as CLIENT, as on a real terminal.
"""

from __future__ import annotations

from mtgate.domain.enums import DealReason

SL_MARKER = "[sl]"
"""Appended to the comment of a ticket closed by its stop loss (reference §1.1)."""
TP_MARKER = "[tp]"
"""Appended to the comment of a ticket closed by its take profit (reference §1.1)."""
STOP_OUT_PREFIX = "so:"
"""A stop-out record's comment starts with it: ``so: <level>%/<equity>/<margin>`` [O]."""


def stop_out_comment(level: float, equity: float, margin: float) -> str:
    """The comment MT4 servers give a ticket closed by stop out (docs/protocol.md §10)."""
    return f"{STOP_OUT_PREFIX} {level:.1f}%/{equity:.2f}/{margin:.2f}"


def mt4_deal_reason(comment: str, magic: int) -> DealReason:
    """The ``reason`` an MT4 EA gives a synthesised deal (docs/protocol.md §10): ``[sl]`` →
    SL, ``[tp]`` → TP, a stop-out comment → SO; otherwise EXPERT when ``magic`` ≠ 0 and
    CLIENT when it is 0."""
    if SL_MARKER in comment:
        return DealReason.SL
    if TP_MARKER in comment:
        return DealReason.TP
    if comment.startswith(STOP_OUT_PREFIX):
        return DealReason.SO
    return DealReason.EXPERT if magic else DealReason.CLIENT
