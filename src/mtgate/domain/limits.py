"""The ranges of the MetaTrader types and journal columns that inputs become.

Every value the bridge accepts (from the API or from a terminal) is bounded by the type it ends
up in: an MQL ``int`` (magic, deviation, points), a ``long``/``ulong`` stored in a signed 64-bit
column (tickets, logins), an MQL ``datetime`` (expirations and report times), a journal column's
length. A value outside its range is refused where it enters, naming the field, so that nothing
downstream (the wire encoder, the journal's driver, a date conversion) meets it.
"""

from __future__ import annotations

import sys
from typing import Annotated, Final

import msgspec

INT32_MAX: Final = 2**31 - 1
"""MQL ``int``: magic numbers (MT4), deviation/slippage, levels in points."""
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
"""Every wire integer fits a signed 64-bit value (docs/protocol.md §2.2); so do the journal's
``BIGINT`` columns (tickets, logins)."""

MT_DATETIME_MAX_S: Final = 32_535_215_999
"""MQL ``datetime`` ends at D'3000.12.31 23:59:59'."""
MT_DATETIME_MAX_MS: Final = MT_DATETIME_MAX_S * 1000 + 999
"""The last millisecond of the MQL ``datetime`` range: the largest trade-server time (``*_ms``)
any MetaTrader value can hold."""

PRICE_MAX: Final = 1e9
"""Largest price (and SL/TP/stop-limit) the API accepts. Real symbols quote far below it (index
CFDs ~1e5, crypto ~1e5, exotic pairs ~1e5); above it the tick-grid arithmetic stops being exact
to the tick, so a larger value cannot be a real price."""
VOLUME_MAX: Final = 1e6
"""Largest volume in lots the API accepts (brokers' ``volume_max`` is at most 1e4-1e5)."""

SYMBOL_MAX: Final = 32
"""Journal ``symbol`` columns (MT symbol names are at most 31 characters)."""
SERVER_MAX: Final = 64
"""Journal ``account_server`` columns."""
SIGNAL_ID_MAX: Final = 64
"""Journal ``signal_id`` column."""
MT_COMMENT_MAX: Final = 31
"""MT order comments (docs/protocol.md §13)."""

Int64 = Annotated[int, msgspec.Meta(ge=INT64_MIN, le=INT64_MAX)]
"""Every wire integer fits a signed 64-bit value (docs/protocol.md §2.2); a larger one is an
invalid message, refused by the decoder before it reaches a journal column."""
TimeMs = Annotated[int, msgspec.Meta(ge=0, le=MT_DATETIME_MAX_MS)]
"""A trade-server time a terminal reports: inside MQL's datetime range (1970 to 3000-12-31)."""
Finite = Annotated[float, msgspec.Meta(ge=-sys.float_info.max, le=sys.float_info.max)]
"""A JSON number that is a finite double: ``1e400`` would decode to infinity."""
