"""The suppression list under workerd, with the real Postfix: an address put on the list gets
nothing (422 `recipient_suppressed`, nothing at the relay), the others of the same message
still get it, and after DELETE the address gets mail again. Sync and queued sends alike."""

import json
import time
import urllib.parse
import uuid

import pytest

from conftest import Client


def api(client, method, path, body=None):
    status, _, raw = client.request(method, path, body, api_key=client.stack.api_key)
    return status, json.loads(raw) if raw else None


def suppressed(address):
    return "/v1/suppressions/" + urllib.parse.quote(address, safe="")


@pytest.fixture
def address(client):
    """A fresh address per test (the list outlives a test in the shared stack), off the list
    again afterwards."""
    address = f"gone-{uuid.uuid4().hex[:8]}@Example.org"
    yield address
    api(client, "DELETE", suppressed(address))


def queued_record(client, message_id, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        status, record = api(client, "GET", f"/v1/messages/{message_id}")
        assert status == 200, record
        if record["status"] not in ("queued", "sending") or time.monotonic() > deadline:
            return record
        time.sleep(0.3)


def test_a_suppressed_address_gets_nothing_until_it_is_deleted(client, address):
    status, entry = api(client, "POST", "/v1/suppressions", {"address": address, "detail": "asked to stop"})
    assert status == 201, entry
    assert entry["address"] == address.replace("Example.org", "example.org")
    assert entry["reason"] == "manual" and entry["detail"] == "asked to stop"
    local = address.split("@")[0]
    status, found = api(client, "GET", suppressed(local + "@EXAMPLE.org"))
    assert status == 200 and found == entry, "the domain compares case-insensitively"

    tag = uuid.uuid4().hex
    status, _, answer = client.send({"to": local + "@example.ORG", "subject": f"suppressed {tag}", "text": "x"})
    assert status == 422, answer
    assert answer["error"]["code"] == "recipient_suppressed"
    assert answer["error"]["retryable"] is False

    other = f"here-{tag[:8]}@example.org"
    status, _, answer = client.send({"to": [address, other], "subject": f"partly {tag}", "text": "x"})
    assert status == 200, answer
    assert answer["accepted"] == [other]
    assert answer["rejected"] == [{"email": address, "code": "recipient_suppressed", "retryable": False}]
    raw, _ = client.wait_for_message(f"partly {tag}")
    # Postfix writes one copy per recipient it was given, each with its Delivered-To.
    client.assert_no_message(f"partly {tag}", besides=1)
    assert b"Delivered-To: " + other.encode() in raw, raw[:400]
    client.assert_no_message(f"suppressed {tag}")

    status, deleted = api(client, "DELETE", suppressed(address))
    assert (status, deleted) == (200, {"address": entry["address"], "deleted": True})
    status, _, answer = client.send({"to": address, "subject": f"again {tag}", "text": "x"})
    assert status == 200 and answer["accepted"] == [address], answer
    client.wait_for_message(f"again {tag}")


def test_a_queued_send_is_refused_or_spares_the_suppressed(client, address):
    assert api(client, "POST", "/v1/suppressions", {"address": address, "reason": "bounce"})[0] == 201
    tag = uuid.uuid4().hex
    async_ = {"Prefer": "respond-async"}
    status, _, raw = client.request("POST", "/v1/send", {"to": address, "subject": f"q-none {tag}", "text": "x"},
                                    headers=async_, api_key=client.stack.api_key)
    assert status == 422 and json.loads(raw)["error"]["code"] == "recipient_suppressed", raw

    other = f"here-{tag[:8]}@example.org"
    status, _, raw = client.request("POST", "/v1/send", {"to": [other, address], "subject": f"q-some {tag}",
                                                         "text": "x"}, headers=async_, api_key=client.stack.api_key)
    assert status == 202, raw
    record = queued_record(client, json.loads(raw)["id"])
    assert record["status"] == "sent", record
    assert record["accepted"] == [other]
    assert record["rejected"] == [{"email": address, "code": "recipient_suppressed", "retryable": False}]
    client.wait_for_message(f"q-some {tag}")
    client.assert_no_message(f"q-none {tag}")


def test_the_list_pages_and_needs_the_key(client):
    tag = uuid.uuid4().hex[:8]
    addresses = [f"list-{tag}-{n}@example.org" for n in range(5)]
    try:
        for address in addresses:
            assert api(client, "POST", "/v1/suppressions", {"address": address})[0] == 201
        seen, after = [], None
        for _ in range(20):
            path = "/v1/suppressions?limit=2" + (f"&after={urllib.parse.quote(after)}" if after else "")
            status, page = api(client, "GET", path)
            assert status == 200, page
            seen += [e["address"] for e in page["suppressions"]]
            after = page["next"]
            if after is None:
                break
        ours = [a for a in seen if tag in a]
        assert ours == list(reversed(addresses)), "newest first, each once"
        assert len(seen) == len(set(seen))
        status, _, raw = client.request("GET", "/v1/suppressions")
        assert status == 401, raw
    finally:
        for address in addresses:
            api(client, "DELETE", suppressed(address))
