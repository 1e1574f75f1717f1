"""After the relay, with the real Postfix: a Worker with `BOUNCE_DOMAIN` sends from its own VERP
address and asks for reports; Postfix bounces `bounce-*` recipients itself (5.1.1) and writes
success reports for the others, and hands every report to the Worker's `email` handler through
`wrangler dev`'s /cdn-cgi/handler/email. The message turns `bounced` or `delivered`, a bounced
address is suppressed and gets nothing more until it is deleted from the list."""

import json
import time
import urllib.parse
import uuid

import pytest

from conftest import ROOT, Client

BOUNCE_DOMAIN = "reports.bounces.localhost"


@pytest.fixture(scope="module")
def worker(stack):
    started = stack.start_workers({"reports": {"BOUNCE_DOMAIN": BOUNCE_DOMAIN}})
    return Client(started["reports"])


def api(worker, method, path, body=None):
    status, _, raw = worker.request(method, path, body, api_key=worker.stack.api_key)
    return status, json.loads(raw) if raw else None


def record_when(worker, message_id, done, timeout=60):
    """The message's record once `done(record)` holds (reports come a moment after the send)."""
    deadline = time.monotonic() + timeout
    while True:
        status, record = api(worker, "GET", f"/v1/messages/{message_id}")
        assert status == 200, record
        if done(record):
            return record
        assert time.monotonic() < deadline, f"not there in {timeout}s: {record}"
        time.sleep(0.3)


def quoted(address):
    return urllib.parse.quote(address, safe="")


def test_a_bounce_marks_the_message_and_suppresses_the_address_until_deleted(worker):
    tag = uuid.uuid4().hex[:10]
    address = f"bounce-{tag}@example.org"
    status, _, answer = worker.send({"to": address, "subject": f"bounce {tag}", "text": "x"})
    assert status == 200 and answer["accepted"] == [address], answer
    record = record_when(worker, answer["id"], lambda r: r["status"] == "bounced")
    bounce = next(e for e in record["events"] if e["type"] == "bounced")
    assert (bounce["recipient"], bounce["status"]) == (address, "5.1.1"), record
    assert "bounces bounce-* recipients" in bounce["diagnostic"], bounce
    assert record["last_event"] == "bounced"
    status, resend = api(worker, "GET", f"/emails/{answer['id']}")
    assert (status, resend["last_event"]) == (200, "bounced"), resend

    status, entry = api(worker, "GET", f"/v1/suppressions/{quoted(address)}")
    assert status == 200, entry
    assert (entry["reason"], entry["message_id"]) == ("bounce", answer["id"])
    assert entry["detail"].startswith("5.1.1 "), entry

    status, _, refused = worker.send({"to": address, "subject": f"again {tag}", "text": "x"})
    assert (status, refused["error"]["code"]) == (422, "recipient_suppressed"), refused
    worker.assert_no_message(f"again {tag}")

    assert api(worker, "DELETE", f"/v1/suppressions/{quoted(address)}")[0] == 200
    status, _, answer = worker.send({"to": address, "subject": f"after {tag}", "text": "x"})
    assert status == 200, answer
    # Postfix bounces it again, and the address is back on the list.
    record_when(worker, answer["id"], lambda r: r["status"] == "bounced")
    assert api(worker, "GET", f"/v1/suppressions/{quoted(address)}")[0] == 200
    api(worker, "DELETE", f"/v1/suppressions/{quoted(address)}")


def test_a_success_report_marks_the_message_delivered(worker):
    tag = uuid.uuid4().hex[:10]
    status, _, answer = worker.send({"to": f"someone-{tag}@example.org", "subject": f"ok {tag}", "text": "x"})
    assert status == 200, answer
    raw, _ = worker.wait_for_message(f"ok {tag}")
    # It went out from the message's own VERP address, asking for reports.
    assert f"Return-Path: <bounce+{answer['id']}@{BOUNCE_DOMAIN}>".encode() in raw, raw[:600]
    record = record_when(worker, answer["id"], lambda r: r["status"] == "delivered")
    assert [e["type"] for e in record["events"]] == ["accepted", "sent", "delivered"], record
    status, resend = api(worker, "GET", f"/emails/{answer['id']}")
    assert resend["last_event"] == "delivered", resend


def test_a_queued_message_follows_the_same_loop(worker):
    tag = uuid.uuid4().hex[:10]
    address = f"bounce-q{tag}@example.org"
    status, _, raw = worker.request("POST", "/v1/send", {"to": address, "subject": f"q {tag}", "text": "x"},
                                    headers={"Prefer": "respond-async"}, api_key=worker.stack.api_key)
    assert status == 202, raw
    record = record_when(worker, json.loads(raw)["id"], lambda r: r["status"] == "bounced")
    assert [e["type"] for e in record["events"]] == ["accepted", "sent", "bounced"], record
    api(worker, "DELETE", f"/v1/suppressions/{quoted(address)}")


def handler(worker, raw: bytes, to: str, sender: str = "MAILER-DAEMON") -> int:
    """Hands `raw` to the Worker's email handler as the relay does."""
    query = urllib.parse.urlencode({"from": sender, "to": to})
    status, _, _ = worker.request("POST", f"/cdn-cgi/handler/email?{query}", raw)
    return status


def sample(name: str, message_id: str, recipient: str) -> bytes:
    text = (ROOT / "tests" / "reports" / name).read_text()
    text = text.replace("bounces.example.com", BOUNCE_DOMAIN)
    return text.replace("{ID}", message_id).replace("{RCPT}", recipient).replace("\n", "\r\n").encode()


def test_a_report_twice_changes_nothing_and_what_is_no_report_is_counted(worker):
    tag = uuid.uuid4().hex[:10]
    address = f"joe-{tag}@example.org"
    status, _, answer = worker.send({"to": address, "subject": f"twice {tag}", "text": "x"})
    assert status == 200, answer
    message_id = answer["id"]
    record_when(worker, message_id, lambda r: r["status"] == "delivered")
    verp = f"bounce+{message_id}@{BOUNCE_DOMAIN}"
    # A Gmail-shaped bounce for the same recipient, twice: the second one adds nothing.
    assert handler(worker, sample("gmail-bounce.eml", message_id, address), verp) == 200
    once = record_when(worker, message_id, lambda r: r["status"] == "bounced")
    assert handler(worker, sample("gmail-bounce.eml", message_id, address), verp) == 200
    assert api(worker, "GET", f"/v1/messages/{message_id}")[1] == once
    api(worker, "DELETE", f"/v1/suppressions/{quoted(address)}")

    _, before = api(worker, "GET", "/v1/reports")
    assert before["bounce_domain"] == BOUNCE_DOMAIN
    assert handler(worker, sample("auto-reply.eml", message_id, address), verp) == 200
    unknown = "0b012345-6789-4bcd-8f01-23456789abcd"
    assert handler(worker, sample("postfix-bounce.eml", unknown, address), f"bounce+{unknown}@{BOUNCE_DOMAIN}") == 200
    _, after = api(worker, "GET", "/v1/reports")
    assert after["ignored"]["not_a_report"] == before["ignored"]["not_a_report"] + 1, after
    assert after["ignored"]["unknown_message"] == before["ignored"]["unknown_message"] + 1, after
    assert api(worker, "GET", f"/v1/messages/{message_id}")[1] == once

