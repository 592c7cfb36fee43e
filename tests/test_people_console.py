"""Finding a person in the console over HTTP, against the relay and the PassKit sandbox on real
servers: the search box POSTs, answers with a redirect to the person's page addressed by a blind
index (never the email), finds emails, external ids and names by whole word, and the page shows
every delivery about them, their pass and Erase."""

from __future__ import annotations

from pathlib import Path

import httpx

from relay.sandbox import State
from relay.sealing import Sealer

from .conftest import SECRET_KEY
from .test_failures_console import (  # noqa: F401  (fixtures)
    console,
    csrf,
    deliveries,
    hook_path,
    relay,
    sandbox,
    text_of,
)

SEALER = Sealer.from_secrets([SECRET_KEY])


def find(browser: httpx.Client, q: str) -> httpx.Response:
    box = browser.get("/admin/search")
    return browser.post("/admin/search", data={"csrf": csrf(box.text), "q": q})


def test_find_a_person_by_email_id_or_name_and_see_their_page(
    relay: tuple[str, State, Path],  # noqa: F811
    console: httpx.Client,  # noqa: F811
) -> None:
    for zap in ({"external_id": "HS-4242", "email": "mara@example.com", "first_name": "Mara",
                 "last_name": "Quist", "points": "5"},
                {"external_id": "HS-4242", "email": "mara@example.com", "points": "lots"},
                {"external_id": "HS-7", "email": "jo@example.com", "first_name": "Jo",
                 "last_name": "Quist", "points": "1"}):  # fmt: skip
        console.post(hook_path(), data=zap)
    box = console.get("/admin/search")
    assert box.status_code == 200 and 'name="q"' in box.text and "<table" not in box.text
    for page in ("/admin/", "/admin/deliveries"):
        assert 'action="/admin/search"' in console.get(page).text  # the box on both

    by_email = find(console, " Mara@Example.com ")
    assert by_email.status_code == 303
    where = by_email.headers["location"]
    assert where == f"/admin/people/{SEALER.blind('mara@example.com')}"
    assert "mara" not in where.lower() and "example" not in where
    assert find(console, "HS-4242").headers["location"] == where  # the same person by id
    # By whole word of her name: her deliveries tell her apart from Jo Quist.
    assert find(console, "mara").headers["location"] == where
    assert find(console, "MARA quist").headers["location"] == where
    both = find(console, "quist")
    assert both.status_code == 200 and "2 people match" in text_of(both.text)
    assert find(console, "mar").status_code == 200  # not a whole word: no one
    assert "No one with that" in text_of(find(console, "mar").text)

    page = console.get(where)
    words = text_of(page.text)
    assert page.status_code == 200 and words.startswith("← Find someone else Mara Quist")
    assert words.count("HS-4242") >= 2  # both of her deliveries, and none of Jo's
    assert "HS-7" not in words and "Open the pass" in words
    assert 'name="who" value="mara@example.com"' in page.text  # Erase, confirmed on its page
    assert console.get("/admin/people/not-an-index").status_code == 303
    assert len(deliveries(relay[2])) == 3  # looking sends nothing
