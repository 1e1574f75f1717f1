"""Signed webhooks under workerd, with the real Postfix: a Worker with `WEBHOOK_URL` posts each
event of its messages (sent, bounced, delivered, suppressed) in Resend's shape to a receiver
here, signed; every one verifies with the `resend` SDK's webhooks.verify and with the
`standardwebhooks` library; each event comes once after deduplicating by id, and one the
receiver answered 500 comes again, with the same id."""

import base64
import json
import os
import subprocess
import time
import urllib.parse
import uuid

import pytest

from conftest import ROOT, Client

BOUNCE_DOMAIN = "hooks.bounces.localhost"
SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()


@pytest.fixture(scope="module")
def worker(stack, receiver):
    started = stack.start_workers({"hooks": {
        "BOUNCE_DOMAIN": BOUNCE_DOMAIN, "WEBHOOK_URL": receiver.url, "WEBHOOK_SECRET": SECRET,
        "WEBHOOK_RETRY_SECONDS": "1",
    }})
    return Client(started["hooks"])


def verified(deliveries):
    """What the two verifiers said of each delivery."""
    done = subprocess.run(["node", str(ROOT / "tests" / "e2e" / "verify_webhooks.mjs")], cwd=ROOT,
                          input=json.dumps([{"body": d["body"], "headers": d["headers"]} for d in deliveries]),
                          env={**os.environ, "WEBHOOK_SECRET": SECRET}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_every_event_is_posted_signed_in_resends_shape(worker, receiver):
    tag = uuid.uuid4().hex[:10]
    bounced = f"bounce-{tag}@example.org"
    status, _, answer = worker.send({"to": bounced, "subject": f"hook bounce {tag}", "text": "x"})
    assert status == 200, answer
    bounce_id = answer["id"]
    status, _, answer = worker.send({"to": f"ok-{tag}@example.org", "subject": f"hook ok {tag}", "text": "x"})
    assert status == 200, answer
    ok_id = answer["id"]

    deliveries = receiver.wait_for(bounce_id, {"email.sent", "email.bounced"}) + \
        receiver.wait_for(ok_id, {"email.sent", "email.delivered"})
    for result in verified(deliveries):
        assert result["resend"]["ok"] and result["standard"]["ok"], result

    bounce = next(json.loads(d["body"]) for d in deliveries if json.loads(d["body"])["type"] == "email.bounced")
    data = bounce["data"]
    assert (data["email_id"], data["to"], data["subject"]) == (bounce_id, [bounced], f"hook bounce {tag}")
    assert data["bounce"]["type"] == "Permanent" and data["bounce"]["recipient"] == bounced, data
    assert data["bounce"]["message"].startswith("5.1.1"), data
    assert bounce["created_at"].endswith("Z") and data["created_at"].endswith("Z")
    for delivery in deliveries:
        headers = delivery["headers"]
        assert headers["webhook-id"] == headers["svix-id"] and headers["webhook-signature"].startswith("v1,")
        assert headers["webhook-signature"] == headers["svix-signature"]
    worker.request("DELETE", "/v1/suppressions/" + urllib.parse.quote(bounced, safe=""), api_key=worker.stack.api_key)


def test_a_suppressed_recipient_is_posted_and_each_event_comes_once(worker, receiver):
    tag = uuid.uuid4().hex[:10]
    gone = f"gone-{tag}@example.org"
    status, _, _ = worker.request("POST", "/v1/suppressions", {"address": gone}, api_key=worker.stack.api_key)
    assert status == 201
    status, _, answer = worker.send({"to": [gone, f"here-{tag}@example.org"], "subject": f"hook s {tag}", "text": "x"})
    assert status == 200, answer
    deliveries = receiver.wait_for(answer["id"], {"email.suppressed", "email.sent", "email.delivered"})
    time.sleep(3)  # anything more would come within this
    deliveries = receiver.of(answer["id"])
    by_id = {}
    for delivery in deliveries:
        by_id.setdefault(delivery["headers"]["webhook-id"], []).append(json.loads(delivery["body"]))
    types = sorted(bodies[0]["type"] for bodies in by_id.values())
    assert types == ["email.delivered", "email.sent", "email.suppressed"], types
    suppressed = next(bodies[0] for bodies in by_id.values() if bodies[0]["type"] == "email.suppressed")
    assert suppressed["data"]["suppressed"]["recipient"] == gone
    worker.request("DELETE", "/v1/suppressions/" + urllib.parse.quote(gone, safe=""), api_key=worker.stack.api_key)


def test_a_webhook_answered_500_comes_again_with_the_same_id(worker, receiver):
    tag = uuid.uuid4().hex[:10]
    with receiver.lock:
        receiver.fail_first.add(f"hook retry {tag}")
    status, _, answer = worker.send({"to": f"retry-{tag}@example.org", "subject": f"hook retry {tag}", "text": "x"})
    assert status == 200, answer
    # The sent event's id: msg_{email id}_{its place in the timeline}.
    got = receiver.deliveries(f"msg_{answer['id']}_1", 2)
    first, second = got[0], got[1]
    assert json.loads(first["body"])["type"] == "email.sent"
    assert first["body"] == second["body"], "the same event, byte for byte"
    assert second["at"] - first["at"] >= 0.9, "after WEBHOOK_RETRY_SECONDS"
    assert all(r["resend"]["ok"] and r["standard"]["ok"] for r in verified(got))


def test_a_redirect_is_never_followed_and_the_webhook_comes_again(worker, receiver):
    tag = uuid.uuid4().hex[:10]
    with receiver.lock:
        receiver.redirect_first.add(f"hook moved {tag}")
    status, _, answer = worker.send({"to": f"moved-{tag}@example.org", "subject": f"hook moved {tag}", "text": "x"})
    assert status == 200, answer
    got = receiver.deliveries(f"msg_{answer['id']}_1", 2)
    assert [r["path"] for r in got[:2]] == ["/hooks/edge-mailer"] * 2, "the 307 was not followed to /elsewhere"
    with receiver.lock:
        assert not [r for r in receiver.received if r["path"] == "/elsewhere"]
