"""The Resend-compatible API under workerd, driven by Resend's own Node SDK (the `resend`
package, pinned in package.json) with RESEND_BASE_URL pointed at the Worker: a send, one
with an attachment, a batch, the status by id, an invalid address and a wrong key. Every
email goes through the queue to the bundled Postfix."""

import json
import os
import subprocess
import uuid

from conftest import ROOT

FROM = "App <app@edge-mailer.localhost>"


def run_sdk(stack, tag: str) -> dict:
    env = {**os.environ, "RESEND_BASE_URL": stack.base_url, "RESEND_API_KEY": stack.api_key, "TAG": tag, "FROM": FROM}
    done = subprocess.run(["node", str(ROOT / "tests" / "e2e" / "resend_sdk.mjs")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_resends_sdk_sends_batches_reads_status_and_gets_errors_in_its_shape(client, stack):
    tag = uuid.uuid4().hex
    results = run_sdk(stack, tag)

    send = results["send"]
    assert send["error"] is None and len(send["data"]["id"]) == 36, send
    status = results["get"]
    assert status["error"] is None, status
    assert status["data"]["last_event"] == "sent", status
    assert status["data"]["id"] == send["data"]["id"]
    assert status["data"]["subject"] == f"sdk send {tag}" and status["data"]["to"] == ["someone@example.org"]
    assert status["data"]["tags"] == [{"name": "case", "value": "send"}]
    raw, message = client.wait_for_message(f"sdk send {tag}")
    assert message["X-Entity-Ref-ID"] == tag
    assert message["From"] == FROM
    assert f"html {tag}" in message.get_body(("html",)).get_content()

    assert results["attachment"]["error"] is None, results["attachment"]
    _, message = client.wait_for_message(f"sdk attachment {tag}")
    files = [part for part in message.iter_attachments() if part.get_filename() == "data.bin"]
    assert files and files[0].get_content() == bytes((i * 7) % 256 for i in range(300))

    batch = results["batch"]
    assert batch["error"] is None and len(batch["data"]["data"]) == 2, batch
    client.wait_for_message(f"sdk batch one {tag}")
    client.wait_for_message(f"sdk batch two {tag}")

    invalid = results["invalid"]
    assert invalid["data"] is None and invalid["error"]["name"] == "validation_error", invalid
    assert invalid["error"]["statusCode"] == 422 and "to" in invalid["error"]["message"]
    wrong = results["wrong_key"]
    assert wrong["error"]["name"] == "invalid_api_key" and wrong["error"]["statusCode"] == 403, wrong


def test_a_node_buffer_serialised_by_older_sdks_arrives_byte_for_byte(client, stack):
    """SDKs before 6.x sent an attachment's Buffer as JSON.stringify writes it."""
    tag = uuid.uuid4().hex
    data = bytes(range(256))
    body = {"from": FROM, "to": "someone@example.org", "subject": f"buffer {tag}", "text": "file",
            "attachments": [{"filename": "all.bin", "content": {"type": "Buffer", "data": list(data)}}]}
    status, _, raw = client.request("POST", "/emails", body, api_key=stack.api_key)
    assert status == 200, raw
    _, message = client.wait_for_message(f"buffer {tag}", timeout=60)
    files = [part for part in message.iter_attachments() if part.get_filename() == "all.bin"]
    assert files and files[0].get_content() == data
