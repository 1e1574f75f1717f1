"""Queued delivery under workerd: Queues, R2 and the ledger Durable Object as wrangler dev
emulates them, against the bundled Postfix. A message answered 202 is delivered once, retried
while the relay is away, failed with the relay's reply when refused, and dead-lettered after
its last attempt."""

import base64
import json
import os
import threading
import time
import uuid

import pytest

from conftest import Client, connection_of, restart_relay


@pytest.fixture(scope="module")
def queued(stack):
    # The second attempt comes a second after the first, the third ten seconds later: long
    # enough for a Postfix restarted under load (the outage test lost all three attempts to a
    # slow restart when they were one second apart), short enough for the dead-letter test.
    worker = stack.start_workers({"queued": {"DELIVERY_MODE": "queue", "SMTP_SESSIONS": "0",
                                             "DELIVERY_RETRY_SECONDS": "1,10", "DELIVERY_MAX_ATTEMPTS": "3"}})["queued"]
    return Client(worker)


def send(client: Client, body: dict):
    status, headers, answer = client.send(body)
    assert status == 202, answer
    assert headers["Location"] == f"/v1/messages/{answer['id']}"
    return answer


def status_of(client: Client, id: str) -> dict:
    status, _, raw = client.request("GET", f"/v1/messages/{id}", api_key=client.stack.api_key)
    assert status == 200, raw
    return json.loads(raw)


def wait_for_status(client: Client, id: str, wanted: set, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        record = status_of(client, id)
        if record["status"] in wanted:
            return record
        assert time.monotonic() < deadline, f"{id} still {record['status']} after {timeout}s: {record}"
        time.sleep(0.3)


def message(tag: str, to: str = "someone@example.org", **extra) -> dict:
    return {"to": to, "subject": f"queued {tag}", "text": f"body {tag}", **extra}


def test_a_queued_send_is_delivered_once(queued, client):
    tag = uuid.uuid4().hex
    answer = send(queued, message(tag))
    assert answer["status"] == "queued" and answer["message_id"].startswith("<")
    record = wait_for_status(queued, answer["id"], {"sent", "failed", "unknown"})
    assert record["status"] == "sent" and record["attempts"] == 1, record
    assert record["message_id"] == answer["message_id"]
    raw, _ = client.wait_for_message(tag)
    assert answer["message_id"].encode() in raw
    client.assert_no_message(tag, within=2, besides=1)


def test_a_relay_outage_delays_the_message_and_loses_nothing(queued, client, stack):
    tag = uuid.uuid4().hex
    answers = []

    def while_down():
        answers.append(send(queued, message(tag)))
        deadline = time.monotonic() + 30
        while status_of(queued, answers[0]["id"])["attempts"] < 1:
            assert time.monotonic() < deadline, "no attempt while the relay was down"
            time.sleep(0.3)

    restart_relay(stack, while_down)
    answer = answers[0]
    record = wait_for_status(queued, answer["id"], {"sent", "failed", "unknown"})
    assert record["status"] == "sent" and record["attempts"] >= 2, record
    client.wait_for_message(tag)
    client.assert_no_message(tag, within=2, besides=1)


def test_a_refused_recipient_fails_at_once_with_the_relays_reply(queued):
    answer = send(queued, message(uuid.uuid4().hex, to="reject-queued@example.org"))
    record = wait_for_status(queued, answer["id"], {"sent", "failed", "unknown"})
    assert record["status"] == "failed" and record["attempts"] == 1, record
    assert record["smtp"]["code"] == 550 and record["last_error"]["code"] == "relay_rejected_recipient"
    assert not record.get("dead_lettered")


def test_a_deferred_recipient_is_retried_then_failed_and_dead_lettered(queued):
    answer = send(queued, message(uuid.uuid4().hex, to="tempfail-queued@example.org"))
    record = wait_for_status(queued, answer["id"], {"sent", "failed", "unknown"}, timeout=90)
    assert record["status"] == "failed" and record["attempts"] == 3, record
    assert record["last_error"]["code"] == "relay_busy" and record["smtp"]["code"] == 450
    assert record["dead_lettered"] is True
    status, _, raw = queued.request("GET", "/v1/messages?status=failed&limit=50", api_key=queued.stack.api_key)
    assert status == 200 and answer["id"].encode() in raw


def test_fifty_concurrent_sends_arrive_once_each_over_few_connections(queued, client, stack):
    tags = [uuid.uuid4().hex for _ in range(50)]
    answers = {}

    def one(tag):
        answers[tag] = send(queued, message(tag))

    threads = [threading.Thread(target=one, args=(tag,)) for tag in tags]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len({a["message_id"] for a in answers.values()}) == 50
    records = [wait_for_status(queued, a["id"], {"sent", "failed", "unknown"}) for a in answers.values()]
    assert all(r["status"] == "sent" for r in records), [r for r in records if r["status"] != "sent"]
    for tag in tags:
        client.wait_for_message(tag)
        client.assert_no_message(tag, within=0, besides=1)
    connections = {connection_of(stack, r["smtp"]["text"]) for r in records}
    assert len(connections) <= 25, f"{len(connections)} SMTP connections for 50 messages"


def test_a_five_megabyte_attachment_goes_through_the_queue_intact(queued, client):
    data = os.urandom(5 * 1024 * 1024)
    tag = uuid.uuid4().hex
    answer = send(queued, message(tag, attachments=[{"filename": "big.bin", "content": base64.b64encode(data).decode()}]))
    record = wait_for_status(queued, answer["id"], {"sent", "failed", "unknown"})
    assert record["status"] == "sent", record
    _, parsed = client.wait_for_message(tag)
    assert next(parsed.iter_attachments()).get_content() == data


@pytest.mark.parametrize("invalid", [None, 4])
def test_a_sync_batch_uses_one_connection_and_an_invalid_message_fails_alone(client, stack, invalid):
    tags = [uuid.uuid4().hex for _ in range(10)]
    messages = [message(tag) for tag in tags]
    if invalid is not None:
        messages[invalid]["to"] = "not an address"
    status, _, raw = client.request("POST", "/v1/send/batch", {"messages": messages}, api_key=stack.api_key)
    assert status == 200, raw
    results = json.loads(raw)["data"]
    assert [r.get("ok", False) for r in results] == [i != invalid for i in range(10)], results
    if invalid is not None:
        assert results[invalid]["error"]["code"] == "validation_failed"
    for tag, result in zip(tags, results):
        if result.get("ok"):  # in order: the i-th result is the i-th message
            raw, _ = client.wait_for_message(tag)
            assert result["message_id"].encode() in raw
    connections = {connection_of(stack, r["smtp"]["text"]) for r in results if r.get("ok")}
    assert len(connections) == 1, connections
    if invalid is not None:
        client.assert_no_message(tags[invalid], within=1)


def test_a_queued_batch_answers_202_with_an_id_per_message(queued):
    tags = [uuid.uuid4().hex for _ in range(3)]
    status, _, raw = queued.request("POST", "/v1/send/batch", {"messages": [message(t) for t in tags]},
                                    api_key=queued.stack.api_key)
    assert status == 202, raw
    results = json.loads(raw)["data"]
    assert [r["status"] for r in results] == ["queued"] * 3
    for r in results:
        assert wait_for_status(queued, r["id"], {"sent", "failed", "unknown"})["status"] == "sent"
