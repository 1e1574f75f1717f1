"""The OpenAPI document under workerd: served at /v1/openapi.json exactly as it is in the repo,
valid OpenAPI 3.1 (openapi-spec-validator), and fuzzed against the running Worker with
schemathesis, which generates requests from it: no 5xx, every answer matching the document,
and no message it gets sent reaching the relay with a malformed header.

The number of requests schemathesis made is printed and written to
.local/schemathesis-summary.txt."""

import json
import os
import re
import subprocess
import sys
import time
import urllib.parse

from openapi_spec_validator import validate

from conftest import ROOT

DOCUMENT = ROOT / "www" / "v1" / "openapi.json"
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def test_the_document_is_served_as_it_is_in_the_repo_and_is_valid_openapi(client):
    status, headers, raw = client.request("GET", "/v1/openapi.json")
    assert status == 200, raw
    assert headers["Content-Type"].startswith("application/json")
    served = json.loads(raw)
    assert served == json.loads(DOCUMENT.read_text())
    validate(served)


def header_problems(raw: bytes) -> list:
    """What is wrong with a received message's header block: a line that is neither a field
    nor a continuation, a bare CR, a line over 998 octets, a field name of odd characters."""
    head = raw.split(b"\n\n", 1)[0]
    problems = []
    for line in head.split(b"\n"):
        if b"\r" in line.rstrip(b"\r"):
            problems.append(("bare CR", line[:80]))
        if len(line) > 998:
            problems.append(("longer than 998 octets", line[:80]))
        if line[:1] in (b" ", b"\t"):
            continue
        if not re.match(rb"^[!-9;-~]+:", line):
            problems.append(("not a header field", line[:80]))
    return problems


def clear_suppressions(client):
    """Takes every address schemathesis put on the suppression list off it again: the stack is
    shared, and a later test must not find one of its recipients there."""
    for _ in range(100):
        status, _, raw = client.request("GET", "/v1/suppressions?limit=100", api_key=client.stack.api_key)
        assert status == 200, raw
        entries = json.loads(raw)["suppressions"]
        if not entries:
            return
        for entry in entries:
            quoted = urllib.parse.quote(entry["address"], safe="")
            client.request("DELETE", f"/v1/suppressions/{quoted}", api_key=client.stack.api_key)


def test_schemathesis_finds_no_5xx_and_no_answer_outside_the_document(stack, client):
    inbox = stack.inbox
    before = set(inbox.iterdir()) if inbox.exists() else set()
    command = [str(ROOT / ".local" / "venv" / "bin" / "schemathesis"), "run", str(DOCUMENT),
               "--url", stack.base_url, "--header", f"Authorization: Bearer {stack.api_key}",
               "--checks", CHECKS, "--max-examples", "30", "--seed", "2026", "--workers", "1",
               "--request-timeout", "30", "--phases", "examples,coverage,fuzzing",
               # Outputs mask the Authorization header (its default); say so.
               "--output-sanitize", "true"]
    env = {**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_TELEMETRY": "false"}
    started = time.monotonic()
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    finally:
        clear_suppressions(client)
    output = done.stdout + done.stderr
    assert stack.api_key not in output, "the API key showed in schemathesis' output"
    summary = re.search(r"(\d+) generated", output) or re.search(r"(\d+) test cases", output)
    generated = summary.group(1) if summary else "?"
    line = f"schemathesis: {generated} generated test cases in {time.monotonic() - started:.0f}s, exit {done.returncode}"
    (ROOT / ".local").mkdir(exist_ok=True)
    (ROOT / ".local" / "schemathesis-summary.txt").write_text(line + "\n\n" + output)
    print(line, file=sys.stderr)
    assert done.returncode == 0, output[-6000:]

    # Postfix delivers asynchronously: give the last messages a moment.
    time.sleep(2)
    sent = [path for path in (set(inbox.iterdir()) if inbox.exists() else set()) - before]
    with open(ROOT / ".local" / "schemathesis-summary.txt", "a") as summary_file:
        summary_file.write(f"\nmessages that reached the relay: {len(sent)}\n")
    print(f"{len(sent)} of them reached the relay", file=sys.stderr)
    assert sent, "no generated request reached the relay: the header check below would prove nothing"
    problems = {path.name: header_problems(path.read_bytes()) for path in sent}
    assert not any(problems.values()), {name: p for name, p in problems.items() if p}
