"""Snapshots keep a fixed schedule (docs/protocol.md §5.3): a late push does not shift the
later ones, and missed pushes are not made up (the review found each later push moved onto
the late one's time)."""

from __future__ import annotations

import pytest

from mtsim.terminal import next_slot


def test_on_time_the_next_slot_is_one_period_on() -> None:
    assert next_slot(10.0, 10.2, 1.0) == 11.0


def test_a_late_push_keeps_the_grid() -> None:
    # Slot 11 was missed by 0.5 s: it is pushed now (11 <= now), the next one is at 12.
    slot = next_slot(10.0, 11.5, 1.0)
    assert slot == 11.0
    assert next_slot(slot, 11.6, 1.0) == 12.0


def test_slots_missed_entirely_are_not_made_up() -> None:
    # Asleep from 10 to 13.7: slots 11, 12 and 13 went by; one push now (for 13), next at 14.
    slot = next_slot(10.0, 13.7, 1.0)
    assert slot == pytest.approx(13.0)
    assert next_slot(slot, 13.8, 1.0) == pytest.approx(14.0)
