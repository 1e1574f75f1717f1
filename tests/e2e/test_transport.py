"""The Worker in workerd against each transport the relay offers, and the failures a real
network gives: implicit TLS, a certificate that does not verify, a relay without STARTTLS,
a closed port, and a configuration workerd cannot use."""

import json
import uuid

import pytest

from conftest import Client
import devstack


@pytest.fixture(scope="module")
def workers(stack):
    ports = stack.relay_ports
    return {
        name: Client(worker)
        for name, worker in stack.start_workers({
            "implicit_tls": {"SMTP_PORT": str(ports.tls), "SMTP_SECURITY": "tls"},
            "untrusted_certificate": {"SMTP_PORT": str(ports.untrusted)},
            "no_starttls": {"SMTP_PORT": str(ports.plain)},
            "closed_port": {"SMTP_PORT": str(devstack.free_port())},
            "closed_port_tls": {"SMTP_PORT": str(devstack.free_port()), "SMTP_SECURITY": "tls"},
            "tls_to_a_plain_port": {"SMTP_PORT": str(ports.plain), "SMTP_SECURITY": "tls"},
            "port_25": {"SMTP_PORT": "25"},
        }).items()
    }


MESSAGE = {"to": "someone@example.org", "subject": "transport", "text": "hello"}


def test_implicit_tls_submits_in_5_round_trips(workers, client):
    status, _, answer = workers["implicit_tls"].send_debug(MESSAGE)
    assert status == 200, answer
    assert answer["round_trips"] == 5
    _, message = client.wait_for_message(answer["message_id"])
    received = message.get_all("Received")[0]
    assert "with ESMTPSA" in received and "using TLS" in received


def test_certificate_that_does_not_verify_is_relay_tls_failed(workers, client):
    tag = uuid.uuid4().hex
    status, _, answer = workers["untrusted_certificate"].send_debug({**MESSAGE, "subject": f"transport {tag}"})
    assert status == 502, answer
    assert answer["error"]["code"] == "relay_tls_failed"
    sent = [e["line"] for e in answer["transcript"] if e["from"] == "client"]
    assert not any(line.startswith(("AUTH", "MAIL")) for line in sent), sent
    client.assert_no_message(tag)


def test_relay_without_starttls_gets_no_credentials_and_no_mail(workers):
    status, _, answer = workers["no_starttls"].send_debug(MESSAGE)
    assert status == 502, answer
    assert answer["error"]["code"] == "relay_tls_unavailable"
    # What the client said (its own notes, such as "<connected>", left out).
    sent = [e["line"] for e in answer["transcript"] if e["from"] == "client" and not e["line"].startswith("<")]
    assert sent == [sent[0]] and sent[0].startswith("EHLO "), sent


def test_closed_port_is_relay_unreachable(workers):
    status, _, answer = workers["closed_port"].send(MESSAGE)
    assert status == 502, answer
    assert answer["error"]["code"] == "relay_unreachable"
    assert answer["error"]["retryable"] is True


def test_port_25_is_misconfigured_naming_the_variable(workers):
    status, _, answer = workers["port_25"].send(MESSAGE)
    assert status == 500, answer
    assert answer["error"]["code"] == "misconfigured"
    assert answer["error"]["message"].startswith("SMTP_PORT")
    # Health stays healthy and says nothing about configuration.
    status, _, raw = workers["port_25"].request("GET", "/v1/health")
    assert status == 200 and json.loads(raw) == {"ok": True, "version": json.loads(raw)["version"]}


@pytest.mark.parametrize("worker, code", [
    ("closed_port_tls", "relay_unreachable"),  # nothing listens: retryable, not a TLS failure
    ("tls_to_a_plain_port", "relay_tls_failed"),  # a port that takes TCP but not TLS
])
def test_implicit_tls_tells_a_closed_port_from_a_failed_handshake(workers, worker, code):
    status, _, answer = workers[worker].send(MESSAGE)
    assert status == 502, answer
    assert answer["error"]["code"] == code
    assert answer["error"]["retryable"] is (code == "relay_unreachable")


def check_relay(client: Client) -> dict:
    status, _, raw = client.request("POST", "/v1/relay/check", api_key=client.stack.api_key)
    assert status == 200, raw
    return json.loads(raw)


def test_the_relay_check_reports_every_step_against_postfix_and_sends_nothing(client, stack):
    before = len(list(stack.inbox.iterdir())) if stack.inbox.exists() else 0
    answer = check_relay(client)
    assert answer["ok"] is True, answer
    steps = [(s["step"], s["ok"]) for s in answer["steps"]]
    assert steps == [(name, True) for name in ("connect", "greeting", "ehlo", "starttls", "tls", "ehlo_tls", "auth")]
    assert answer["steps"][1]["reply"].startswith("220 ")
    assert answer["steps"][6]["reply"].startswith("235 ") and "***" in answer["steps"][6]["reply"]
    assert "PIPELINING" in answer["capabilities"] and any(c.startswith("AUTH ") for c in answer["capabilities"])
    assert stack.creds["relay_password"] not in json.dumps(answer)
    assert all(isinstance(s["ms"], int) and s["ms"] >= 0 for s in answer["steps"])
    after = len(list(stack.inbox.iterdir())) if stack.inbox.exists() else 0
    assert after == before, "the check sends no mail"


@pytest.mark.parametrize("worker, last_step, code", [
    ("untrusted_certificate", "tls", "relay_tls_failed"),
    ("no_starttls", "starttls", "relay_tls_unavailable"),
    ("closed_port", "connect", "relay_unreachable"),
])
def test_the_relay_check_ends_at_the_failing_step_with_its_code(workers, worker, last_step, code):
    answer = check_relay(workers[worker])
    assert answer["ok"] is False, answer
    last = answer["steps"][-1]
    assert (last["step"], last["ok"], last["code"]) == (last_step, False, code), answer
    assert all(step["ok"] for step in answer["steps"][:-1])
