"""The send API end to end: attachments of several megabytes, non-ASCII everywhere, inline
images, extra headers, idempotent retries (Workers KV under wrangler dev), and limits."""

import base64
import os
import uuid

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
