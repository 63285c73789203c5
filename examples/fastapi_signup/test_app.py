"""The sign-up service, with FastAPI's test client and oban_bridge.testing's fixtures."""

from __future__ import annotations

import psycopg
from fastapi.testclient import TestClient

from oban_bridge import ObanBridge
from oban_bridge.testing import Testing

from .app import make_app


def test_signup_enqueues_the_welcome_mail_in_the_same_transaction(oban_db_url: str, oban: ObanBridge,
                                                                  oban_testing: Testing) -> None:
    app = make_app(oban_db_url)
    with TestClient(app) as client:  # the lifespan makes the service's table, as under uvicorn
        first = client.post("/signup/ada@example.com")
        assert first.status_code == 200
        assert client.post("/signup/ada@example.com").status_code == 409  # rolled back: no second mail
    oban_testing.assert_enqueued(worker="MyApp.Mailer.Welcome", queue="mailers",
                                 args={"user_id": first.json()["user"]})
    assert len(oban_testing.all_enqueued(worker="MyApp.Mailer.Welcome")) == 1
    with psycopg.connect(oban_db_url) as conn:
        assert conn.execute("SELECT count(*) FROM signup_users").fetchone() == (1,)
