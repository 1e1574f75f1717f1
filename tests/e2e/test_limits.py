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

from conftest import Client

CHUNK = b"x" * 65536
HUGE = 100 * 1024 * 1024  # what the audit sent: 100 MiB, chunked, no Content-Length


def post_chunked(base_url: str, path: str, headers: dict, total: int = HUGE):
    """Streams `total` bytes chunked and stops as soon as an answer arrives (a reader thread
    watches for it). Returns the status, the answer's body and how many body bytes had gone out
    by then."""
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
