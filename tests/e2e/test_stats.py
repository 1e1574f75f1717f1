"""GET /v1/stats under workerd: a Worker of its own sends messages of each outcome, and the
hour's counts by status are those its listing of messages shows; the relay's answer times
are counted for each attempt."""

import json
import time

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
