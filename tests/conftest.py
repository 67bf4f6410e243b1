"""Fixtures shared by every test tier.

PostgreSQL: tests that need the server take ``pg_url`` (the server, checked reachable once per
session) or ``pg_schema_url`` (a fresh schema of their own, dropped afterwards). Without a
server they skip with the reason; under ``CI=true`` they fail instead, so CI cannot go green
by silently not testing PostgreSQL.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _pg_engine(url: str) -> Engine:
    return create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 3})


@pytest.fixture(scope="session")
def pg_url() -> str:
    """``MTGATE_TEST_PG_URL`` (default: the local test server), once it answers."""
    url = os.environ.get("MTGATE_TEST_PG_URL", DEFAULT_PG_URL)
    engine = _pg_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        shown = make_url(url).render_as_string(hide_password=True)
        reason = f"PostgreSQL at {shown} is unreachable (set MTGATE_TEST_PG_URL): {exc.orig}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)
    finally:
        engine.dispose()
    return url


@pytest.fixture
def pg_schema_url(pg_url: str) -> Iterator[str]:
    """``pg_url`` pointed (through ``search_path``) at a new, empty schema; dropped after."""
    schema = f"mtgate_test_{uuid.uuid4().hex[:12]}"
    engine = _pg_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = make_url(pg_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()
