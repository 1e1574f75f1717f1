"""Retention under workerd (`RETENTION_DAYS`): the ledger's alarm deletes a message that ended
more than that long ago, its record and its stored body, and its id then answers 404 like one
that never existed; a message still queued is left alone."""

import datetime
import json
import sqlite3
import time
import uuid

import devstack
import pytest

from conftest import Client

# 0.0001 days: 8.64 seconds.
RETENTION_DAYS = "0.0001"


@pytest.fixture(scope="module")
def worker(stack):
    started = stack.start_workers({"retention": {"RETENTION_DAYS": RETENTION_DAYS, "DELIVERY_MODE": "queue"}})
    return Client(started["retention"])


def stored_bodies(worker: Client) -> set:
    """The keys in the Worker's local R2 bucket. wrangler 4.86 (miniflare) keeps a bucket's
    objects in a SQLite file of its own under the --persist-to directory."""
    r2 = worker.stack.state / f"wrangler-state-{worker.stack.name}" / "v3" / "r2" / "miniflare-R2BucketObject"
    keys = set()
    for path in r2.glob("*.sqlite"):
        if path.name == "metadata.sqlite":
            continue
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            keys |= {key for (key,) in db.execute("SELECT key FROM _mf_objects")}
    return keys


def status_of(worker: Client, id: str) -> tuple:
    status, _, raw = worker.request("GET", f"/v1/messages/{id}", api_key=worker.stack.api_key)
    return status, json.loads(raw)


def wait_for(what, timeout: float, check):
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if check(value):
            return value
        assert time.monotonic() < deadline, f"still {value} after {timeout}s"
        time.sleep(0.5)


def test_a_message_that_ended_is_deleted_with_its_body_and_a_queued_one_is_kept(worker, client):
    tag = uuid.uuid4().hex
    status, _, sent = worker.send({"to": "someone@example.org", "subject": f"retention {tag}", "text": tag})
    assert status == 202, sent
    ended = sent["id"]
    # One scheduled an hour ahead stays queued all along.
    later = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)).isoformat()
    status, _, raw = worker.request("POST", "/emails", {
        "from": devstack.MAIL_FROM, "to": "someone@example.org", "subject": f"later {tag}", "text": "x",
        "scheduled_at": later}, api_key=worker.stack.api_key)
    assert status == 200, raw
    queued = json.loads(raw)["id"]

    wait_for(lambda: status_of(worker, ended)[1].get("status"), 30, lambda s: s == "sent")
    client.wait_for_message(tag)
    assert {ended, queued} <= stored_bodies(worker)
    # Past RETENTION_DAYS (8.64 s after it was accepted), the alarm deletes it.
    status, answer = wait_for(lambda: status_of(worker, ended), 40, lambda s: s[0] == 404)
    assert answer["error"]["code"] == "not_found", answer
    bodies = stored_bodies(worker)
    assert ended not in bodies and queued in bodies, bodies
    status, answer = status_of(worker, queued)
    assert (status, answer["status"]) == (200, "queued"), answer
