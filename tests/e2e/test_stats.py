"""GET /v1/stats under workerd: a Worker of its own sends messages of each outcome, and the
hour's counts by status are those its listing of messages shows; the relay's answer times
are counted for each attempt. And the listing's search (`q`), which the ledger's SQL answers."""

import json
import time
import urllib.parse
import uuid

import pytest

from conftest import Client


@pytest.fixture(scope="module")
def worker(stack):
    return Client(stack.start_workers({"stats": {}})["stats"])


def api(worker, path):
    status, _, raw = worker.request("GET", path, api_key=worker.stack.api_key)
    assert status == 200, raw
    return json.loads(raw)


def test_the_hours_counts_are_the_ledgers(worker):
    for to in ["a@example.org", "b@example.org", "reject-c@example.org"]:
        status, _, _ = worker.send({"to": to, "subject": "stats", "text": "x"})
        assert status in (200, 422)
    status, _, raw = worker.request("POST", "/v1/send", {"to": "q@example.org", "subject": "stats", "text": "x"},
                                    headers={"Prefer": "respond-async"}, api_key=worker.stack.api_key)
    assert status == 202, raw
    deadline = time.monotonic() + 30
    while True:  # the sync sends' records are written once they were answered, and the queued one is sent
        listed = api(worker, "/v1/messages?limit=100")["messages"]
        if len(listed) == 4 and not [m for m in listed if m["status"] in ("queued", "sending")]:
            break
        assert time.monotonic() < deadline, listed
        time.sleep(0.3)
    stats = api(worker, "/v1/stats?hours=2")
    expected = {}
    for message in listed:
        expected[message["status"]] = expected.get(message["status"], 0) + 1
    assert {k: v for k, v in stats["totals"].items() if v} == expected == {"sent": 3, "failed": 1}, stats
    assert len(stats["per_hour"]) == 2
    assert stats["relay_answer_ms"]["attempts"] == 4, stats
    assert 0 < stats["relay_answer_ms"]["p50"] <= stats["relay_answer_ms"]["p95"] < 10_000, stats


def test_the_listing_searches_subjects_and_recipients_in_the_ledger(worker):
    tag = uuid.uuid4().hex[:8]
    for to, subject in [(f"Finder-{tag}@example.org", f"q {tag} alpha"), ("x@example.org", f"Q {tag} 100%"),
                        ("y@example.org", f"q {tag}_beta"), ("z@example.org", f"q {tag}xbeta")]:
        status, _, answer = worker.send({"to": to, "subject": subject, "text": "x"})
        assert status == 200, answer

    def found(query):
        deadline = time.monotonic() + 20
        while True:  # the records are written once each send was answered
            quoted = urllib.parse.quote(query, safe="")
            subjects = sorted(m["subject"] for m in api(worker, f"/v1/messages?limit=100&q={quoted}")["messages"])
            if subjects or time.monotonic() > deadline:
                return subjects
            time.sleep(0.3)

    assert found(f"Q {tag}") == sorted([f"q {tag} alpha", f"Q {tag} 100%", f"q {tag}_beta", f"q {tag}xbeta"])
    assert found(f"finder-{tag}") == [f"q {tag} alpha"], "a recipient, in any case"
    assert found(f"{tag} 100%") == [f"Q {tag} 100%"]
    assert found(f"{tag}_beta") == [f"q {tag}_beta"], "_ is a letter here, not a wildcard"
