"""The send API end to end: attachments of several megabytes, non-ASCII everywhere, inline
images, extra headers, idempotent retries (Workers KV under wrangler dev), and limits."""

import base64
import json
import os
import time
import urllib.parse
import uuid

from conftest import without_id

ATTACHMENT = os.urandom(3 * 1024 * 1024 + 17)  # binary, several megabytes


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_multi_megabyte_attachment_arrives_intact(client):
    status, _, answer = client.send({
        "to": "someone@example.org",
        "subject": "Bericht",
        "text": "Anbei der Bericht.",
        "attachments": [{"filename": "Bericht für März.bin", "content_type": "application/octet-stream",
                         "content": b64(ATTACHMENT)}],
    })
    assert status == 200, answer
    _, message = client.wait_for_message(answer["message_id"])
    assert message.get_content_type() == "multipart/mixed"
    attachments = list(message.iter_attachments())
    assert len(attachments) == 1
    assert attachments[0].get_filename() == "Bericht für März.bin"
    assert attachments[0].get_content() == ATTACHMENT


def test_non_ascii_everywhere(client):
    status, _, answer = client.send({
        "from": "Zoë Ünïcode <noreply@edge-mailer.localhost>",
        "to": ["Jörg Müller <jörg@bücher.example>", {"name": "山田 太郎", "email": "taro@example.org"}],
        "reply_to": "Ålesund Støtte <støtte@example.org>",
        "subject": "Grüße, 你好, привет — ✓",
        "text": "Ärger über Öl? Ça va. 日本語のテキスト。",
        "html": "<p>Ärger über <b>Öl</b>? 日本語</p>",
        "headers": {"X-Kampagne": "Frühling ✓"},
        "attachments": [{"filename": "résumé 履歴書.txt", "content_type": "text/plain", "content": b64("Grüße".encode())}],
    })
    assert status == 200, answer
    # The IDN domain went out as punycode; the UTF-8 local part needed SMTPUTF8.
    assert answer["accepted"] == ["jörg@xn--bcher-kva.example", "taro@example.org"]
    _, message = client.wait_for_message(answer["message_id"])
    assert message["Subject"] == "Grüße, 你好, привет — ✓"
    assert message["From"].addresses[0].display_name == "Zoë Ünïcode"
    assert [a.display_name for a in message["To"].addresses] == ["Jörg Müller", "山田 太郎"]
    assert message["Reply-To"].addresses[0].display_name == "Ålesund Støtte"
    assert message["X-Kampagne"] == "Frühling ✓"
    body = message.get_body(preferencelist=("plain",))
    assert body.get_content().strip() == "Ärger über Öl? Ça va. 日本語のテキスト。"
    attachment = next(message.iter_attachments())
    assert attachment.get_filename() == "résumé 履歴書.txt"
    assert attachment.get_content() == "Grüße"


def test_inline_image_is_related_to_the_html(client):
    png = bytes.fromhex("89504e470d0a1a0a") + os.urandom(64)
    status, _, answer = client.send({
        "to": "someone@example.org", "subject": "logo", "text": "see the logo",
        "html": '<p><img src="cid:logo@edge-mailer"></p>',
        "attachments": [{"filename": "logo.png", "content_type": "image/png", "content": b64(png),
                         "content_id": "logo@edge-mailer"}],
    })
    assert status == 200, answer
    _, message = client.wait_for_message(answer["message_id"])
    assert message.get_content_type() == "multipart/alternative"
    related = [p for p in message.iter_parts() if p.get_content_type() == "multipart/related"]
    assert len(related) == 1
    html, image = list(related[0].iter_parts())
    assert html.get_content_type() == "text/html"
    assert image["Content-ID"] == "<logo@edge-mailer>"
    assert image.get_content() == png


def test_bcc_gets_the_message_but_no_header_shows_it(client):
    status, _, answer = client.send({"to": "someone@example.org", "bcc": "hidden@example.net", "subject": "bcc", "text": "x"})
    assert status == 200, answer
    assert "hidden@example.net" in answer["accepted"]
    _, message = client.wait_for_message(answer["message_id"])
    # Postfix prepends its delivery trace (Return-Path, X-Original-To, Delivered-To,
    # Received), which names the envelope recipient; the headers we wrote never do.
    relay_trace = {"return-path", "x-original-to", "delivered-to", "received"}
    ours = [(name, value) for name, value in message.items() if name.lower() not in relay_trace]
    assert ours and not any("hidden@example.net" in str(value) for _, value in ours), ours
    assert message["Bcc"] is None


def test_idempotent_retry_sends_once(client):
    key = f"order-{uuid.uuid4()}"
    body = {"to": "someone@example.org", "subject": f"idempotent {key}", "text": "once"}
    headers = {"Idempotency-Key": key}
    first = client.request("POST", "/v1/send", body, headers=headers, api_key=client.stack.api_key)
    second = client.request("POST", "/v1/send", body, headers=headers, api_key=client.stack.api_key)
    assert first[0] == second[0] == 200
    assert first[2] == second[2]
    assert {k.lower(): v for k, v in second[1].items()}.get("idempotent-replayed") == "true"
    client.wait_for_message(f"idempotent {key}")
    client.assert_no_message(f"idempotent {key}", besides=1)
    conflict = client.request("POST", "/v1/send", {**body, "text": "changed"}, headers=headers, api_key=client.stack.api_key)
    assert conflict[0] == 409 and b"idempotency_conflict" in conflict[2]


def test_oversized_request_is_413(client):
    # Over the default MAX_REQUEST_BYTES (14 MiB).
    huge = {"to": "someone@example.org", "subject": "x", "text": "y" * (15 * 1024 * 1024)}
    status, _, raw = client.request("POST", "/v1/send", huge, api_key=client.stack.api_key)
    assert status == 413
    assert b"payload_too_large" in raw


def test_twenty_racing_requests_with_one_idempotency_key_send_once(client):
    import threading
    tag = uuid.uuid4().hex
    body = {"to": "someone@example.org", "subject": f"race {tag}", "text": "once"}
    statuses = []

    def one():
        status, _, _ = client.request("POST", "/v1/send", body, api_key=client.stack.api_key,
                                      headers={"Idempotency-Key": f"race-{tag}"})
        statuses.append(status)

    threads = [threading.Thread(target=one) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(statuses) == 20 and set(statuses) <= {200, 409}, statuses
    client.wait_for_message(tag)
    client.assert_no_message(tag, within=3, besides=1)


def _json(raw):
    return json.loads(raw) if raw else None


def test_debug_and_the_demo_routes_answer_only_loopback_or_a_key(client, stack):
    """Issue 29, point 4, under workerd: wrangler dev (4.86) sets CF-Connecting-IP to the
    socket's peer, 127.0.0.1 here, unless the client sent one, which it keeps — so a request
    carrying another address stands for a client that is not on loopback, as Cloudflare's own
    header says in production."""
    tag = uuid.uuid4().hex
    form = {"name": f"Local {tag}", "message": "hi"}
    json_accept = {"accept": "application/json"}
    outside = {**json_accept, "CF-Connecting-IP": "203.0.113.9"}

    # From loopback, with DEMO_INBOX_URL set (the stack sets it): the local demo.
    status, _, raw = client.request("GET", "/v1/demo", headers=json_accept)
    assert (status, _json(raw)["inbox"], _json(raw)["relay_check"]) == (200, True, True), raw
    status, _, raw = client.request("POST", "/v1/forms/demo?debug=1", form, headers=json_accept)
    answer = _json(raw)
    assert status == 200, answer
    assert answer["transcript"] and answer["round_trips"] >= 1 and answer["wasm_memory_bytes"] > 0, answer
    ours = answer["message_id"]
    path = "/v1/demo/message?" + urllib.parse.urlencode({"id": ours})
    deadline = time.monotonic() + 20
    while True:
        status, _, raw = client.request("GET", path)
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert status == 200 and tag.encode() in raw, (status, raw[:200])

    # Not from loopback: no debug fields without a key, no demo routes.
    status, _, raw = client.request("GET", "/v1/demo", headers=outside)
    assert (status, _json(raw)["inbox"], _json(raw)["relay_check"]) == (200, False, False), raw
    status, _, raw = client.request("POST", "/v1/forms/demo?debug=1", form, headers=outside)
    assert (status, without_id(_json(raw))) == (200, {"ok": True}), raw
    status, _, raw = client.request("POST", "/v1/forms/demo?debug=1", form, headers=outside, api_key=stack.api_key)
    assert status == 200 and _json(raw)["transcript"] and "wasm_memory_bytes" in _json(raw), raw
    status, _, raw = client.request("GET", path, headers=outside)
    assert (status, _json(raw)["error"]["code"]) == (404, "not_found"), raw
    status, _, raw = client.request("POST", "/v1/demo/relay-check", headers=outside)
    assert (status, _json(raw)["error"]["code"]) == (404, "not_found"), raw

    # The demo returns only what it sent: a message of the API, from loopback, is not its own.
    status, _, answer = client.send({"to": "someone@example.org", "subject": f"not the demo's {tag}", "text": "x"})
    assert status == 200, answer
    client.wait_for_message(answer["message_id"])
    status, _, raw = client.request("GET", "/v1/demo/message?" + urllib.parse.urlencode({"id": answer["message_id"]}))
    assert (status, _json(raw)["error"]["message"]) == (404, "the demo sent no message with this id"), raw
