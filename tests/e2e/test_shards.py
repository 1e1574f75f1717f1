"""The sharded ledger under workerd (`LEDGER_SHARDS`): queued messages land in more than one
ledger object, each object holds only the ids that name it, every message is found by its id
and delivered once, and a listing that follows `next` lists each of them once, newest first.
With `LEDGER_SHARDS=1` everything stays in the one object of before."""

import json
import sqlite3
import threading
import uuid

import pytest

from conftest import Client

COUNT = 24


@pytest.fixture(scope="module")
def workers(stack):
    started = stack.start_workers({
        "sharded": {"DELIVERY_MODE": "queue"},
        "one_shard": {"DELIVERY_MODE": "queue", "LEDGER_SHARDS": "1"},
    })
    return {name: Client(worker) for name, worker in started.items()}


def queue_messages(worker: Client, tag: str) -> list:
    """COUNT queued sends at once (so several land in one millisecond); their answers."""
    answers = [None] * COUNT

    def one(i):
        status, _, answer = worker.send({"to": "someone@example.org", "subject": subject(tag, i), "text": tag})
        assert status == 202, answer
        answers[i] = answer

    threads = [threading.Thread(target=one, args=(i,)) for i in range(COUNT)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return answers


def subject(tag: str, i: int) -> str:
    return f"shard {tag} [{i}]"  # "[1]" is no part of "[10]"


def ledger_objects(worker: Client) -> dict:
    """Each DeliveryLedger object's name and the ids it keeps: miniflare (wrangler 4.86) keeps
    one SQLite file per Durable Object under --persist-to, the object's name in a table of its
    own (metadata.sqlite, the alarms, has neither)."""
    folder = worker.stack.state / f"wrangler-state-{worker.stack.name}" / "v3" / "do" / "edge-mailer-DeliveryLedger"
    objects = {}
    for path in sorted(folder.glob("*.sqlite")):
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'records'").fetchone():
                (name,) = db.execute("SELECT name FROM __miniflare_do_name").fetchone()
                objects[name] = {id for (id,) in db.execute("SELECT id FROM records")}
    return objects


def listing(worker: Client, limit: int) -> list:
    """Every page of GET /v1/messages, following `next`."""
    pages, after = [], ""
    while True:
        status, _, raw = worker.request("GET", f"/v1/messages?limit={limit}{after}", api_key=worker.stack.api_key)
        assert status == 200, raw
        answer = json.loads(raw)
        pages.append(answer["messages"])
        if answer["next"] is None:
            return pages
        after = f"&after={answer['next']}"
        assert len(pages) < 200, "the listing does not end"


def test_messages_land_in_several_shards_and_are_listed_and_delivered_once(workers, client):
    worker = workers["sharded"]
    tag = uuid.uuid4().hex
    ids = [answer["id"] for answer in queue_messages(worker, tag)]
    shards = {id[:2] for id in ids}
    assert len(shards) > 1, f"{COUNT} ids all in shard {shards}"
    for i in range(COUNT):
        client.wait_for_message(subject(tag, i))
        client.assert_no_message(subject(tag, i), within=0, besides=1)

    objects = {name: kept for name, kept in ledger_objects(worker).items() if kept & set(ids)}
    assert len(objects) == len(shards), f"{len(shards)} shards named, {len(objects)} objects hold them"
    for name, kept in objects.items():
        # Shard 0 is the object of before, "ledger"; shard i is "ledger-{i:02x}".
        assert {id[:2] for id in kept} == {"00" if name == "ledger" else name.removeprefix("ledger-")}, (name, kept)

    for limit in (5, 100):
        records = [record for page in listing(worker, limit) for record in page]
        listed = [record["id"] for record in records]
        assert sorted(set(listed) & set(ids)) == sorted(ids), f"limit {limit}: not every message listed"
        assert len(listed) == len(set(listed)), f"limit {limit}: a record listed twice"
        order = [(record["created_at"], record["id"]) for record in records]
        assert order == sorted(order, reverse=True), f"limit {limit}: not newest first"
    for id in ids:
        status, _, raw = worker.request("GET", f"/v1/messages/{id}", api_key=worker.stack.api_key)
        assert status == 200 and json.loads(raw)["status"] == "sent", raw


def test_one_shard_keeps_every_message_in_the_ledger_of_before(workers, client):
    worker = workers["one_shard"]
    tag = uuid.uuid4().hex
    ids = [answer["id"] for answer in queue_messages(worker, tag)]
    assert {id[:2] for id in ids} == {"00"}
    for i in range(COUNT):
        client.wait_for_message(subject(tag, i))
    assert {name: kept for name, kept in ledger_objects(worker).items() if kept & set(ids)} == {"ledger": set(ids)}
