"""The built Worker in `wrangler dev` submits through STARTTLS + AUTH to a real Postfix relay;
the received message is checked with Python's email package (an independent MIME parser)."""

import email.utils
import smtplib
import ssl
import uuid
from datetime import datetime, timezone

import pytest

from conftest import Client, relay_session


@pytest.fixture(scope="module")
def cold(stack):
    """A Worker without warm sessions: each send opens, uses and QUITs a session of its own, so
    the whole conversation and Postfix's account of it belong to one send."""
    return Client(stack.start_workers({"cold": {"SMTP_SESSIONS": "0"}})["cold"])

SUBJECT = "Grüße aus edge-mailer — ✓ 日本語"
TEXT = "Hallo Welt!\nZweite Zeile mit Umlauten: äöüß.\n.a line starting with a dot\n"
HTML = "<p>Hallo <b>Welt</b> — äöü</p>"


def test_health_answers_without_revealing_configuration(client, stack):
    status, _, raw = client.request("GET", "/v1/health")
    assert status == 200
    body = raw.decode()
    assert '"ok":true' in body and '"version"' in body
    for secret in (stack.creds["relay_password"], stack.api_key, str(stack.relay_port)):
        assert secret not in body


def test_message_arrives_through_starttls_and_auth_and_parses_back(client):
    status, _, answer = client.send({
        "to": ["Empfängerin <someone@example.org>", {"name": "Bob", "email": "bob@example.org"}],
        "subject": SUBJECT,
        "text": TEXT,
        "html": HTML,
    })
    assert status == 200, answer
    assert answer["ok"] is True
    assert answer["accepted"] == ["someone@example.org", "bob@example.org"]
    assert answer["rejected"] == []
    # The relay's own final reply, passed through.
    assert answer["smtp"]["code"] == 250
    assert answer["smtp"]["enhanced"] == "2.0.0"
    assert answer["smtp"]["text"].startswith("Ok: ") and " queued as " in answer["smtp"]["text"]

    message_id = answer["message_id"]
    assert message_id.startswith("<") and message_id.endswith("@edge-mailer.localhost>")
    raw, message = client.wait_for_message(message_id)

    assert message["Message-ID"] == message_id
    assert email.utils.parseaddr(message["From"])[1] == "noreply@edge-mailer.localhost"
    to = [addr for _, addr in email.utils.getaddresses([message["To"]])]
    assert to == ["someone@example.org", "bob@example.org"]
    assert message["To"].addresses[0].display_name == "Empfängerin"
    assert message["Subject"] == SUBJECT
    sent = email.utils.parsedate_to_datetime(message["Date"])
    assert abs((datetime.now(timezone.utc) - sent).total_seconds()) < 600

    assert message.get_content_type() == "multipart/alternative"
    parts = {part.get_content_type(): part for part in message.iter_parts()}
    assert set(parts) == {"text/plain", "text/html"}
    assert parts["text/plain"].get_content().replace("\r\n", "\n").rstrip("\n") == TEXT.rstrip("\n")
    assert HTML in parts["text/html"].get_content()

    # Postfix's trace header: TLS was used, AUTH succeeded (ESMTPSA), and our EHLO name is a
    # real name, not an IP literal.
    received = message.get_all("Received")[0]
    assert "with ESMTPSA" in received
    assert "using TLS" in received
    assert received.startswith("from edge-mailer.localhost ")
    # Line endings: the relay runs with smtpd_forbid_bare_newline=yes, so any bare LF we sent
    # would have failed the whole session (test_relay_refuses_bare_lf proves it would).
    assert b"\r" not in raw.replace(b"\r\n", b"")


def test_relay_refuses_bare_lf(stack):
    """The check above only means something if a bare LF really fails; prove it does."""
    context = ssl.create_default_context(cafile=str(stack.relay_dir / "tls" / "ca.pem"))
    smtp = smtplib.SMTP("localhost", stack.relay_port, local_hostname="probe.example.com", timeout=10)
    smtp.starttls(context=context)
    smtp.login(stack.creds["relay_user"], stack.creds["relay_password"])
    smtp.mail("noreply@edge-mailer.localhost")
    smtp.rcpt("someone@example.org")
    code, _ = smtp.docmd("DATA")
    assert code == 354
    smtp.send(b"Subject: bare\r\n\r\nline one\nline two\r\n.\r\n")  # raw: smtplib would fix the LF
    code, reply = smtp.getreply()
    assert code >= 500, (code, reply)
    smtp.close()


def test_refused_recipient_is_422_with_the_relays_reply(client):
    tag = uuid.uuid4().hex
    status, _, answer = client.send({"to": "reject-nobody@example.org", "subject": f"refused {tag}", "text": "y"})
    assert status == 422, answer
    error = answer["error"]
    assert error["code"] == "relay_rejected_recipient"
    assert error["retryable"] is False
    assert (error["smtp"]["code"], error["smtp"]["enhanced"], error["smtp"]["phase"]) == (550, "5.1.1", "rcpt")
    client.assert_no_message(tag)


def test_one_refused_recipient_does_not_stop_the_others(client):
    status, _, answer = client.send({"to": ["someone@example.org", "reject-x@example.org"], "subject": "partial", "text": "y"})
    assert status == 200, answer
    assert answer["accepted"] == ["someone@example.org"]
    assert [r["email"] for r in answer["rejected"]] == ["reject-x@example.org"]
    assert answer["rejected"][0]["smtp"]["code"] == 550
    client.wait_for_message(answer["message_id"])


def test_deferred_recipient_is_relay_busy_with_retry_after(client):
    status, headers, answer = client.send({"to": "tempfail-x@example.org", "subject": "x", "text": "y"})
    assert status == 503, answer
    assert answer["error"]["code"] == "relay_busy"
    assert answer["error"]["retryable"] is True
    assert answer["error"]["smtp"]["code"] == 450
    assert int({k.lower(): v for k, v in headers.items()}["retry-after"]) > 0


def test_missing_or_wrong_api_key_is_401(client):
    body = {"to": "someone@example.org", "subject": "x", "text": "y"}
    for key in (None, "wrong-key"):
        status, _, answer = client.send(body, api_key=key)
        assert status == 401
        assert answer["error"]["code"] == "unauthorized"
        assert answer["error"]["retryable"] is False


def test_header_injection_is_422_and_nothing_is_sent(client):
    tag = uuid.uuid4().hex
    for body in (
        {"to": "someone@example.org\r\nBcc: victim@example.net", "subject": f"x {tag}", "text": tag},
        {"to": "someone@example.org", "subject": f"hi {tag}\r\nBcc: victim@example.net", "text": tag},
        {"to": "Eve\nBcc: victim@example.net <someone@example.org>", "subject": f"x {tag}", "text": tag},
    ):
        status, _, answer = client.send(body)
        assert status == 422, answer
        assert answer["error"]["code"] == "validation_failed"
    client.assert_no_message(tag)


def test_unparseable_body_is_400(client, stack):
    status, _, raw = client.request("POST", "/v1/send", b"{not json", api_key=stack.api_key)
    assert status == 400
    assert b'"invalid_request"' in raw


def test_worker_log_never_shows_secrets(client, stack):
    """Runs last: everything the Worker and wrangler printed during this session."""
    client.send({"to": "reject-log@example.org", "subject": "x", "text": "y"})
    log = stack.log_path.read_text(errors="replace")
    assert "POST /v1/send" in log  # the log is really the Worker's
    for secret in (stack.creds["relay_password"], stack.api_key):
        assert secret not in log


def test_pipelining_and_chunking_are_used_against_postfix(cold, stack):
    """Postfix offers PIPELINING and CHUNKING: MAIL, RCPT and BDAT go out in one flight."""
    status, _, answer = cold.send_debug({"to": ["someone@example.org", "bob@example.org"], "subject": "flight", "text": "x"})
    assert status == 200, answer
    lines = [(entry["from"], entry["line"]) for entry in answer["transcript"]]
    sent = [line for side, line in lines if side == "client"]
    # No AUTH payload in the transcript.
    assert "AUTH PLAIN ***" in sent
    assert not any(stack.creds["relay_password"] in line for _, line in lines)
    # The transaction: four client lines in a row, then the relay's four replies.
    start = next(i for i, (side, line) in enumerate(lines) if line.startswith("MAIL FROM:"))
    flight = lines[start:start + 4]
    assert [side for side, _ in flight] == ["client"] * 4, flight
    assert flight[1][1] == "RCPT TO:<someone@example.org>" and flight[2][1] == "RCPT TO:<bob@example.org>"
    assert flight[3][1].startswith("BDAT ") and flight[3][1].endswith(" LAST")
    assert lines[start + 4][1].startswith("<message, ")
    assert [side for side, _ in lines[start + 5:start + 9]] == ["relay"] * 4
    assert answer["round_trips"] == 7
    # Postfix's own account of this very session: BDAT, no DATA.
    session = relay_session(stack, answer["smtp"]["text"])
    assert " bdat=1 " in session and " rcpt=2 " in session, session
    assert " data=" not in session, session
