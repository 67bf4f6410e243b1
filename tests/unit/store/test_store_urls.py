"""open_journal: which journal a URL gets, and clear errors for the ones it cannot serve."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtgate.store import JournalConfigError, open_journal
from mtgate.store.pg_journal import PgJournal
from mtgate.store.sqlite_journal import SqliteJournal


def test_sqlite_urls_get_the_fast_journal(tmp_path: Path) -> None:
    journal = open_journal(f"sqlite:///{tmp_path}/j.db")
    assert isinstance(journal, SqliteJournal)
    assert journal.path == tmp_path / "j.db"
    relative = open_journal("sqlite:///data/j.db")
    assert isinstance(relative, SqliteJournal)
    assert relative.path == Path("data/j.db")


@pytest.mark.parametrize("scheme", ["postgresql", "postgresql+psycopg"])
def test_postgres_urls_get_the_group_commit_journal_on_psycopg(scheme: str) -> None:
    journal = open_journal(f"{scheme}://u:secret@db.example:5433/trading")
    assert isinstance(journal, PgJournal)
    assert journal.url.drivername == "postgresql+psycopg"
    assert (journal.url.host, journal.url.port, journal.url.database) == (
        "db.example",
        5433,
        "trading",
    )


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("mysql+pymysql://u:secret@h/db", "'mysql+pymysql'"),
        ("postgresql+asyncpg://u:secret@h/db", "'postgresql+asyncpg'"),
        ("postgresql+psycopg2://u:secret@h/db", "'postgresql+psycopg2'"),
    ],
)
def test_unsupported_schemes_are_named_and_passwords_hidden(url: str, named: str) -> None:
    with pytest.raises(JournalConfigError, match="scheme") as info:
        open_journal(url)
    assert named in str(info.value)
    assert "secret" not in str(info.value)


@pytest.mark.parametrize("url", ["journal.db", "", "://nothing"])
def test_a_non_url_is_refused(url: str) -> None:
    with pytest.raises(JournalConfigError, match="not a database URL"):
        open_journal(url)


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "sqlite:///file:x?mode=memory"])
def test_an_in_memory_journal_is_refused(url: str) -> None:
    with pytest.raises(JournalConfigError, match="needs a file path"):
        open_journal(url)


def test_url_errors_are_value_errors() -> None:
    assert issubclass(JournalConfigError, ValueError)
