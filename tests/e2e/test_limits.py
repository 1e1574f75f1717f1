"""What the Worker does before it reads a body, under workerd: a huge chunked body without an
API key, or to a form that does not exist, is answered from the headers without workerd's
memory growing; one with a key is cut off at MAX_REQUEST_BYTES; the request log holds one
line per request, never a body; and the largest message the defaults promise (a 10 MB
attachment) goes through in bounded wasm memory.

wrangler dev's local server takes the whole request body before it passes the answer on (seen
here: all 100 MiB went out first), so what these tests can prove is that the Worker never
holds it: workerd's peak memory does not move."""

import base64
import json
import os
import re
import socket
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

import pytest

from conftest import Client, send_again_if_dropped, without_id

CHUNK = b"x" * 65536
HUGE = 100 * 1024 * 1024  # what the audit sent: 100 MiB, chunked, no Content-Length


def post_chunked(base_url: str, path: str, headers: dict, total: int = HUGE):
    """Streams `total` bytes chunked and stops as soon as an answer arrives (a reader thread
    watches for it). Returns the status, the answer's body and how many body bytes had gone out
    by then."""
    return send_again_if_dropped(lambda: post_chunked_once(base_url, path, headers, total),
                                 f"a chunked POST {path}", body_at=1)


def post_chunked_once(base_url: str, path: str, headers: dict, total: int):
    url = urllib.parse.urlsplit(base_url)
    sock = socket.create_connection((url.hostname, url.port), timeout=60)
    head = [f"POST {path} HTTP/1.1", f"Host: {url.netloc}", "Transfer-Encoding: chunked",
            "Content-Type: application/json", "Connection: close"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    answer = bytearray()
    answered = threading.Event()

    def read():
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                answer.extend(data)
                if b"\r\n\r\n" in answer:
                    answered.set()
        except OSError:
            pass
        answered.set()

    reader = threading.Thread(target=read, daemon=True)
    sent = 0
    try:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        reader.start()
        sock.settimeout(10)  # a server that stopped reading blocks the send; that ends it too
        while sent < total and not answered.is_set():
            sock.sendall(b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK))
            sent += len(CHUNK)
        if sent >= total:
            sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass
    reader.join(timeout=60)
    sock.close()
    head, _, body = bytes(answer).partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1]) if head else 0
    return status, body, sent


def workerd_peak_bytes(stack) -> int:
    """The highest resident memory (VmHWM) of this stack's workerd processes so far."""
    peak = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            if os.getpgid(int(status.parent.name)) != stack.wrangler.pid:
                continue
            text = status.read_text()
        except (OSError, ValueError):
            continue
        if "\nName:\tworkerd" in "\n" + text:
            peak = max(peak, int(re.search(r"VmHWM:\s+(\d+) kB", text).group(1)) * 1024)
    assert peak, "no workerd process found for this stack"
    return peak


# Far less than the body: reading 100 MiB into the Worker raised workerd's peak by 220-460 MB,
# and cannot raise it by less than the 100 MiB it reads. Without the read, after test_api and
# test_forms, workerd's peak grew by 16 MiB with serde_json (26852de) and by 51 MiB with
# src/json.rs (2026-12-02, three runs; no changed line on the body path) while the Worker's wasm
# memory stayed the same to the byte: the growth is workerd's own buffering, which the Worker
# does not steer. The wasm check below is what proves the Worker never held the body.
GROWTH_LIMIT = 64 * 1024 * 1024


def wasm_memory(stack) -> int:
    """The Worker's wasm linear memory (its high-water mark), from a debug send's answer."""
    status, _, answer = Client(stack).send_debug({"to": "probe@example.com", "subject": "memory", "text": "x"})
    assert status == 200, answer
    return answer["wasm_memory_bytes"]


def test_no_key_or_no_form_is_answered_without_reading_the_body(stack):
    wasm_before = wasm_memory(stack)
    before = workerd_peak_bytes(stack)
    status, body, _ = post_chunked(stack.base_url, "/v1/send", {})
    assert status == 401, body
    assert json.loads(body)["error"]["code"] == "unauthorized"
    status, body, _ = post_chunked(stack.base_url, "/v1/forms/no-such-form", {"Accept": "application/json"})
    assert status == 404, body
    grown = workerd_peak_bytes(stack) - before
    assert grown < GROWTH_LIMIT, f"workerd's peak memory grew by {grown >> 20} MiB"
    # The Worker itself held none of it: its wasm memory did not grow at all.
    assert wasm_memory(stack) == wasm_before


def worker_answers(stack, line: str) -> int:
    """How many times the Worker's own log line (not wrangler's) says `line`."""
    return stack.log_path.read_text(errors="replace").count(line)


def test_a_chunked_body_over_the_limit_is_cut_off(stack):
    wasm_before = wasm_memory(stack)
    before = workerd_peak_bytes(stack)
    cut_off = "POST /v1/send 413 payload_too_large"
    answered_before = worker_answers(stack, cut_off)
    status, body, _ = post_chunked(stack.base_url, "/v1/send", {"Authorization": f"Bearer {stack.api_key}"})
    if status == 503:
        # wrangler dev's proxy, still forwarding the upload when the Worker answered, sometimes
        # answers 503 in its place (seen once, in a full e2e run); the Worker's own line says
        # what it answered.
        deadline = time.monotonic() + 5
        while worker_answers(stack, cut_off) == answered_before:
            assert time.monotonic() < deadline, f"503 and no 413 from the Worker: {body[:300]!r}"
            time.sleep(0.2)
    else:
        assert status == 413, body
    # The server closes on the rest of the upload; the reset that follows can take the answer's
    # body with it, but never its status line.
    if body and status == 413:
        assert json.loads(body)["error"]["code"] == "payload_too_large"
    # The Worker held about the limit (14 MiB, in a buffer that doubles as it fills: 16 MiB and
    # the 8 MiB one it was copied from, which the allocator keeps): 32-33 MiB on a fresh Worker,
    # never the 100 MiB sent.
    grown_wasm = wasm_memory(stack) - wasm_before
    assert grown_wasm <= 48 * 1024 * 1024, f"the Worker's wasm memory grew by {grown_wasm >> 20} MiB"
    # workerd's own peak adds what it buffers of the upload to the Worker's growth: 64 MiB on
    # a fresh Worker (its wasm memory still small), 51 MiB after the other tests; reading the
    # whole body would add the 100 MiB itself.
    grown = workerd_peak_bytes(stack) - before
    assert grown < HUGE, f"workerd's peak memory grew by {grown >> 20} MiB"


def test_the_log_has_one_line_per_request_and_no_body(client, stack):
    """One line for each failed request (LOG_REQUESTS=errors, the default), none for successes."""
    def health_lines():
        # The Worker's own line ("<id> GET /v1/health 200 - 3ms"), not wrangler's ("… 200 OK").
        return stack.log_path.read_text(errors="replace").count("GET /v1/health 200 - ")

    healthy_before = health_lines()
    for _ in range(3):
        assert client.request("GET", "/v1/health")[0] == 200
    tag = uuid.uuid4().hex
    address = f"reject-{tag}@example.org"
    status, _, answer = client.send({"to": address, "subject": f"log {tag}", "text": f"secret body {tag}"})
    assert status == 422 and answer["error"]["code"] == "relay_rejected_recipient", answer
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        log = stack.log_path.read_text(errors="replace")
        lines = [line for line in log.splitlines() if "POST /v1/send 422 relay_rejected_recipient" in line]
        if lines:
            break
        time.sleep(0.2)
    assert lines, "no request line for the refused send"
    assert tag not in log, "a request or response body reached the log"
    # The refused send's line is out, so the health checks' would be too.
    assert health_lines() == healthy_before, "successful requests were logged"


@pytest.fixture(scope="module")
def fresh(stack):
    """A Worker of its own with the default settings, that nothing else has used: wasm memory
    only grows, so a measurement on the shared Worker would include every earlier test."""
    return Client(stack.start_workers({"fresh": {}})["fresh"])


def test_a_10_mb_attachment_arrives_byte_for_byte_in_at_most_32_mib_of_wasm_memory(fresh):
    """The default MAX_REQUEST_BYTES takes a 10 MB attachment as base64 JSON, and the Worker
    holds it in at most two copies: the wasm memory of a fresh Worker after the send (its
    high-water mark) stays within 32 MiB."""
    client = fresh
    data = os.urandom(10_000_000)
    tag = uuid.uuid4().hex
    status, _, answer = client.send_debug({
        "to": "someone@example.org", "subject": f"ten megabytes {tag}", "text": "see the attachment",
        "attachments": [{"filename": "random.bin", "content": base64.b64encode(data).decode()}],
    })
    assert status == 200, {k: v for k, v in answer.items() if k != "transcript"}
    memory = answer["wasm_memory_bytes"]
    assert 0 < memory <= 32 * 1024 * 1024, f"wasm memory {memory / 2**20:.1f} MiB"
    _, message = client.wait_for_message(answer["message_id"], timeout=60)
    attached = list(message.iter_attachments())
    assert [a.get_filename() for a in attached] == ["random.bin"]
    assert attached[0].get_content() == data


# The memory budget (issue 29): no single request, valid or not, grows the Worker's wasm memory
# by more than 4x its body or 64 MiB, whichever is less.
def budget(body_bytes: int) -> int:
    return min(4 * body_bytes, 64 * 1024 * 1024)


BODY = 14 * 1024 * 1024 - 4096  # "14 MiB": just under the API's MAX_REQUEST_BYTES
MULTIPART_BOUNDARY = "hostile-boundary-29"

HOSTILE_FORMS = {
    # No files: a body limit of about 1.1 MiB.
    "plain": {"to": "owner@example.org", "rate_limit_per_minute": 1000, "delivery": "sync"},
    # Files up to 10 x 2 MB: its limit is MAX_REQUEST_BYTES, so 170,000 tiny files are read and
    # must be refused by counting the parts, before workerd's formData() builds them.
    "files": {"to": "owner@example.org", "max_files": 10, "max_file_bytes": 2_000_000,
              "rate_limit_per_minute": 1000},
}


def zeros(size: int) -> bytes:
    """`0,0,0,…,0` of about `size` bytes."""
    return b"0," * (size // 2 - 1) + b"0"


def hostile_bodies():
    """name → (path, content type, body, API key?): the audit's bodies, generated in well under
    a second each."""
    part = (f"--{MULTIPART_BOUNDARY}\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a\"\r\n\r\n"
            "x\r\n").encode()
    headers = ",".join(f'"X-H{i}": "v"' for i in range(200_000))
    return {
        "form-json-zeros": ("/v1/forms/plain", "application/json", b'{"a":[' + zeros(BODY - 8) + b"]}", False),
        "form-urlencoded-a&a": ("/v1/forms/plain", "application/x-www-form-urlencoded", b"a&" * (BODY // 2), False),
        "form-14mib-string": ("/v1/forms/plain", "application/json",
                              b'{"message":"' + b"x" * (BODY - 16) + b'"}', False),
        "form-170000-files": ("/v1/forms/files", f"multipart/form-data; boundary={MULTIPART_BOUNDARY}",
                              part * 170_000 + f"--{MULTIPART_BOUNDARY}--\r\n".encode(), False),
        "send-200000-headers": ("/v1/send", "application/json", (
            '{"to": "b@example.org", "subject": "s", "text": "t", "headers": {' + headers + "}}").encode(), True),
        "send-to-zeros": ("/v1/send", "application/json",
                          b'{"subject":"s","text":"t","to":[' + zeros(BODY - 40) + b"]}", True),
        "batch-messages-zeros": ("/v1/send/batch", "application/json",
                                 b'{"messages":[' + zeros(BODY - 20) + b"]}", True),
        "emails-to-zeros": ("/emails", "application/json",
                            b'{"from":"a@example.com","subject":"s","text":"t","to":[' + zeros(BODY - 60) + b"]}",
                            True),
        "emails-batch-zeros": ("/emails/batch", "application/json", b"[" + zeros(BODY - 2) + b"]", True),
    }


# Legitimate requests at a route's largest: they go through, within the same budget.
LEGIT_MESSAGE = 1024 * 1024 - 2048  # about the text room of a form without files


def legit_bodies():
    return {
        "form-1mib-message": ("/v1/forms/plain", "application/x-www-form-urlencoded",
                              b"name=Ada&message=" + b"lorem+ipsum+" * (LEGIT_MESSAGE // 12), False),
        "form-1mib-message-json": ("/v1/forms/plain", "application/json",
                                   b'{"name":"Ada","message":"' + b"lorem ipsum\\n" * (LEGIT_MESSAGE // 13) + b'"}',
                                   False),
    }


HOSTILE = list(hostile_bodies())
LEGIT = list(legit_bodies())


@pytest.fixture(scope="module")
def hostile_workers(stack):
    """One fresh Worker per hostile body (started together): wasm memory only grows and the
    allocator reuses what an earlier request left, so on a shared Worker a later body would be
    measured on the space an earlier one made."""
    forms = json.dumps(HOSTILE_FORMS)
    names = HOSTILE + LEGIT + ["form-chunked-string"]
    started = stack.start_workers({f"hostile-{i}": {"FORMS": forms} for i in range(len(names))})
    return {name: Client(started[f"hostile-{i}"]) for i, name in enumerate(names)}


def wasm_memory_of(client: Client) -> int:
    status, _, answer = client.send_debug({"to": "probe@example.com", "subject": "memory", "text": "x"})
    assert status == 200, {k: v for k, v in answer.items() if k != "transcript"}
    return answer["wasm_memory_bytes"]


# Known gap: a legitimate text-heavy form post costs 5.9-6.9x its body (the body, its fields,
# the plain and HTML copies, then the rendered MIME message with both encoded), over the 4x
# budget; strict, so that the day it fits this marker has to go.
OVER_BUDGET = pytest.mark.xfail(strict=True, reason="a 1 MiB form message costs 5.9-6.9x its body (issue 29)")


@pytest.mark.parametrize("name", HOSTILE + [pytest.param(name, marks=OVER_BUDGET) for name in LEGIT])
def test_a_hostile_body_is_refused_within_the_memory_budget(hostile_workers, name):
    """Each hostile body is refused (413/422), each legitimate one at its largest goes
    through, and neither grows a fresh Worker's wasm memory past the budget."""
    client = hostile_workers[name]
    path, content_type, body, keyed = {**hostile_bodies(), **legit_bodies()}[name]
    before = wasm_memory_of(client)
    started = time.monotonic()
    status, _, raw = client.request("POST", path, body, headers={"content-type": content_type,
                                                               "accept": "application/json"},
                                    api_key=client.stack.api_key if keyed else None)
    took = time.monotonic() - started
    if name in LEGIT:
        assert status == 200 and json.loads(raw)["ok"] is True, raw[:300]
        code = "ok"
    else:
        assert status in (413, 422), raw[:300]
        error = json.loads(raw)
        code = error["error"]["code"] if "error" in error else error["name"]  # Resend's shape
        assert code in ("payload_too_large", "validation_failed", "validation_error"), raw[:300]
    grown = wasm_memory_of(client) - before
    # Measured numbers for BENCHMARKS.md (run with -s to see them).
    print(f"\nMEMORY {name}: body {len(body)} B, {status} {code}, wasm {before} -> {before + grown} "
          f"(+{grown / 2**20:.2f} MiB, budget {budget(len(body)) / 2**20:.1f} MiB), {took:.2f} s")
    assert grown <= budget(len(body)), f"{name}: wasm memory grew by {grown / 2**20:.1f} MiB"


def test_five_legitimate_posts_at_once_all_succeed_after_the_hostile_ones(hostile_workers):
    """On the Worker that took the 14 MiB list of zeros: five ordinary form posts at the same
    time are all delivered."""
    client = hostile_workers["form-json-zeros"]
    tag = uuid.uuid4().hex
    results = [None] * 5

    def post(i):
        fields = urllib.parse.urlencode({"name": f"Ada {i}", "message": f"legit {tag} {i}"}).encode()
        results[i] = client.request("POST", "/v1/forms/plain", fields, headers={
            "content-type": "application/x-www-form-urlencoded", "accept": "application/json"})

    threads = [threading.Thread(target=post, args=(i,)) for i in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for status, _, raw in results:
        assert status == 200 and without_id(json.loads(raw)) == {"ok": True}, raw[:300]
    for i in range(5):
        client.wait_for_message(f"legit {tag} {i}")


def test_a_chunked_body_to_a_form_is_cut_off_at_the_forms_own_limit(hostile_workers):
    """Without a Content-Length, a form without files stops reading at its own limit (about
    1.1 MiB), not at the API's 14 MiB."""
    client = hostile_workers["form-chunked-string"]
    before = wasm_memory_of(client)
    status, body, sent = post_chunked(client.stack.base_url, "/v1/forms/plain", {"Accept": "application/json"},
                                      total=BODY)
    assert status == 413, body[:300]
    if body:
        assert json.loads(body)["error"]["message"] == "the body is over 1152000 bytes"
    grown = wasm_memory_of(client) - before
    print(f"\nMEMORY form-chunked-string: sent {sent} B of {BODY}, {status}, wasm {before} -> {before + grown} "
          f"(+{grown / 2**20:.2f} MiB)")
    assert grown <= budget(1152000), f"wasm memory grew by {grown / 2**20:.1f} MiB"
