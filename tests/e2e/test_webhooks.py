"""Signed webhooks under workerd, with the real Postfix: a Worker with `WEBHOOK_URL` posts each
event of its messages (sent, bounced, delivered, suppressed) in Resend's shape to a receiver
here, signed; every one verifies with the `resend` SDK's webhooks.verify and with the
`standardwebhooks` library; each event comes once after deduplicating by id, and one the
receiver answered 500 comes again, with the same id."""

import base64
import json
import os
import subprocess
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import ROOT, Client

BOUNCE_DOMAIN = "hooks.bounces.localhost"
SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()


class Receiver:
    """An app's webhook endpoint on 127.0.0.1: keeps every delivery; answers 500 to the first
    delivery of each webhook whose body holds one of `fail_first` (a subject's tag), and a
    redirect to /elsewhere to the first one holding one of `redirect_first`."""

    def __init__(self):
        self.received = []
        self.fail_first = set()
        self.redirect_first = set()
        self.failed = set()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
                headers = {name.lower(): value for name, value in self.headers.items()}
                with receiver.lock:
                    receiver.received.append({"body": body, "headers": headers, "at": time.monotonic()})
                    receiver.received[-1]["path"] = self.path
                    hook_id = headers.get("webhook-id")
                    first = hook_id not in receiver.failed
                    failing = first and any(t in body for t in receiver.fail_first)
                    moving = first and any(t in body for t in receiver.redirect_first)
                    if failing or moving:
                        receiver.failed.add(hook_id)
                if moving:
                    self.send_response(307)
                    self.send_header("location", "/elsewhere")
                else:
                    self.send_response(500 if failing else 200)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/edge-mailer"

    def of(self, email_id):
        with self.lock:
            return [r for r in self.received if json.loads(r["body"])["data"]["email_id"] == email_id]

    def deliveries(self, hook_id, count, timeout=60):
        """The first `count` deliveries of the webhook `hook_id`, once they came."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                got = [r for r in self.received if r["headers"].get("webhook-id") == hook_id]
            if len(got) >= count:
                return got
            assert time.monotonic() < deadline, f"{len(got)} deliveries of {hook_id}"
            time.sleep(0.3)

    def wait_for(self, email_id, types, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            got = {json.loads(r["body"])["type"] for r in self.of(email_id)}
            if set(types) <= got:
                return self.of(email_id)
            assert time.monotonic() < deadline, f"{types} not all received for {email_id}: {got}"
            time.sleep(0.3)


@pytest.fixture(scope="module")
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()


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
