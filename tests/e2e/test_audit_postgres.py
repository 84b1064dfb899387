"""The whole audit path with the store on a real PostgreSQL server."""

import os

import pytest
import sqlalchemy as sa

PG_URL = os.environ.get("DATAHAVN_TEST_PG_URL")


@pytest.fixture
def pg_schema(unique):
    """A schema of its own, so each run's store starts empty (and is dropped after)."""
    if not PG_URL:
        pytest.fail("DATAHAVN_TEST_PG_URL is unset: `make test` starts PostgreSQL (scripts/postgres.sh prints one)")
    schema = unique("hub")
    engine = sa.create_engine(PG_URL)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    engine.dispose()


async def test_cells_are_recorded_in_postgresql(make_hub, pg_schema, kernel, cli):
    hub = make_hub("pg", DATAHAVN_AUDIT_DB_URL=pg_schema)
    assert not hub.layout.audit_db.exists() or hub.layout.audit_db.stat().st_size == 0
    user, project = hub.new_member()
    k = await kernel(user, project, on_hub=hub)
    for n in range(5):
        assert (await k.execute(f"print({n} * 2)")).stdout == f"{n * 2}\n"
    events = hub.events(kind="execute", user=user)
    assert [e["code"] for e in events] == [f"print({n} * 2)" for n in range(5)]
    r = cli("audit", "verify", env=hub.env)
    assert r.returncode == 0 and r.stdout.startswith("audit trail sound:"), r.stderr
    engine = sa.create_engine(pg_schema)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT count(*) FROM audit_records WHERE kind = 'execute'").scalar()
    engine.dispose()
    assert rows == 5
