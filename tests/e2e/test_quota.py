"""The relay's quota (`SMTP_RATE`) under workerd, against Postfix: a send past it is refused
with 429 `relay_rate_limited` and Retry-After and never reaches the relay; queued messages past
it wait for their places and are each delivered once, at the quota's pace."""

import email.utils
import json
import uuid

import pytest

from conftest import Client


@pytest.fixture(scope="module")
def workers(stack):
    started = stack.start_workers({
        # A day's window: a test run does not cross UTC midnight in the moment it takes.
        "quota_sync": {"SMTP_RATE": "2/d", "SMTP_SESSIONS": "0"},
        "quota_queued": {"SMTP_RATE": "5/s", "DELIVERY_MODE": "queue"},
    })
    return {name: Client(worker) for name, worker in started.items()}


def message(tag: str) -> dict:
    return {"to": "someone@example.org", "subject": f"quota {tag}", "text": tag}


def test_a_send_past_the_quota_is_429_with_retry_after_and_never_reaches_the_relay(workers, client):
    tags = [uuid.uuid4().hex for _ in range(3)]
    answers = [workers["quota_sync"].send(message(tag)) for tag in tags]
    assert [status for status, _, _ in answers] == [200, 200, 429], answers[2]
    _, headers, refused = answers[2]
    assert refused["error"]["code"] == "relay_rate_limited" and refused["error"]["retryable"] is True
    retry_after = int({k.lower(): v for k, v in headers.items()}["retry-after"])
    assert 0 < retry_after <= 86_400 and refused["error"]["retry_after"] == retry_after
    for tag in tags[:2]:
        client.wait_for_message(tag)
    client.assert_no_message(tags[2], within=2)


def test_queued_messages_past_the_quota_wait_and_are_each_delivered_once(workers, client):
    tags = [uuid.uuid4().hex for _ in range(50)]
    ids = []
    for tag in tags:
        status, _, answer = workers["quota_queued"].send(message(tag))
        assert status == 202, answer
        ids.append(answer["id"])
    received = [client.wait_for_message(tag, timeout=90)[1] for tag in tags]
    for tag in tags:
        client.assert_no_message(tag, within=0, besides=1)
    queued = workers["quota_queued"]
    statuses = {json.loads(queued.request("GET", f"/v1/messages/{id}", api_key=queued.stack.api_key)[2])["status"]
                for id in ids}
    assert statuses == {"sent"}, statuses
    # Postfix stamps each message as it takes it, to the second: 50 at 5 a second fill ten
    # windows of a second, so the first and the last stamps are at least 9 seconds apart (at
    # once, they would take a fraction of one).
    times = [email.utils.parsedate_to_datetime(m["Received"].rsplit(";", 1)[1].strip()) for m in received]
    assert (max(times) - min(times)).total_seconds() >= 9, sorted(times)
