"""Warm sessions under workerd: Durable Objects keep an authenticated session to Postfix open
between requests, so a send after the first costs one round trip; a session the relay drops
is replaced without losing or doubling a message; a session left idle ends with QUIT.

Postfix logs which connection took each message (conftest.connection_of)."""

import json
import threading
import time
import uuid

import pytest

import devstack
import flaky_relay
from conftest import Client, connection_of, relay_session, restart_relay


@pytest.fixture(scope="module")
def workers(stack):
    return {
        name: Client(worker)
        for name, worker in stack.start_workers({
            "one_session": {"SMTP_SESSIONS": "1"},
            "two_sessions": {"SMTP_SESSIONS": "2"},
            "warm_first": {"SMTP_SESSIONS": "2"},
            "quick_idle": {"SMTP_SESSIONS": "1", "SMTP_IDLE_SECONDS": "2"},
        }).items()
    }


def send(client: Client, tag: str):
    status, _, answer = client.send_debug({"to": "someone@example.org", "subject": f"warm {tag}", "text": tag})
    assert status == 200, answer
    return answer


def test_five_sends_in_a_row_share_one_connection_and_one_round_trip_each(workers, client, stack):
    tags = [uuid.uuid4().hex for _ in range(5)]
    answers = [send(workers["one_session"], tag) for tag in tags]
    assert [(a["session"], a["round_trips"]) for a in answers] == [("new", 7)] + [("warm", 1)] * 4
    assert not any("AUTH" in e["line"] for a in answers[1:] for e in a["transcript"])
    assert len({connection_of(stack, a["smtp"]["text"]) for a in answers}) == 1
    for tag in tags:
        client.wait_for_message(tag)
        client.assert_no_message(tag, within=0, besides=1)


def test_a_relay_restart_between_sends_costs_a_new_session_not_the_message(workers, client, stack):
    first = send(workers["one_session"], uuid.uuid4().hex)
    restart_relay(stack)
    tag = uuid.uuid4().hex
    second = send(workers["one_session"], tag)
    assert second["session"] == "new", second
    assert connection_of(stack, second["smtp"]["text"]) != connection_of(stack, first["smtp"]["text"])
    client.wait_for_message(tag)
    client.assert_no_message(tag, within=3, besides=1)


def test_sends_one_at_a_time_all_find_the_first_warm_session(workers, client, stack):
    tags = [uuid.uuid4().hex for _ in range(6)]
    answers = [send(workers["warm_first"], tag) for tag in tags]
    assert [a["session"] for a in answers] == ["new"] + ["warm"] * 5
    assert len({connection_of(stack, a["smtp"]["text"]) for a in answers}) == 1
    for tag in tags:
        client.wait_for_message(tag)
        client.assert_no_message(tag, within=0, besides=1)


def test_ten_concurrent_sends_use_at_most_two_connections(workers, client, stack):
    tags = [uuid.uuid4().hex for _ in range(10)]
    answers = {}

    def one(tag):
        answers[tag] = send(workers["two_sessions"], tag)

    threads = [threading.Thread(target=one, args=(tag,)) for tag in tags]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(answers) == sorted(tags)
    connections = {connection_of(stack, a["smtp"]["text"]) for a in answers.values()}
    assert 1 <= len(connections) <= 2, connections
    for tag in tags:
        client.wait_for_message(tag)
        client.assert_no_message(tag, within=0, besides=1)


def test_an_idle_session_ends_with_quit(workers, stack):
    answer = send(workers["quick_idle"], uuid.uuid4().hex)
    session = relay_session(stack, answer["smtp"]["text"], timeout=20)
    assert " quit=1 " in session, session


@pytest.fixture(scope="module")
def flaky(stack):
    """A relay that fails when told to (scripts/flaky_relay.py), and a Worker with one warm
    session on it."""
    relay = flaky_relay.FlakyRelay(stack.relay_dir / "tls", stack.creds["relay_user"],
                                   str(stack.creds["relay_password"]), devstack.free_port())
    worker = stack.start_workers({"flaky_relay": {"SMTP_PORT": str(relay.port), "SMTP_SESSIONS": "1"}})["flaky_relay"]
    yield relay, Client(worker)
    relay.stop()


def test_a_send_the_relay_refused_before_taking_it_goes_once_on_a_new_session(flaky):
    relay, worker = flaky
    # A 421 greeting: the new session's refusal, then another new session.
    tags = [uuid.uuid4().hex, uuid.uuid4().hex]
    relay.plan("greeting_421")
    first = send(worker, tags[0])
    assert first["session"] == "new" and "421 4.3.2" in json.dumps(first["transcript"]), first
    # A 451 to MAIL on the warm session, then a 451 to MAIL on the new one that replaces it:
    # the second new session takes the message.
    relay.plan("mail_451", "mail_451")
    second = send(worker, tags[1])
    assert second["session"] == "new" and json.dumps(second["transcript"]).count("451 4.3.0") == 2, second
    # Two new sessions at most: a relay that refuses both is relay_busy, and nothing was taken.
    relay.plan("mail_451", "greeting_421", "greeting_421")
    status, _, answer = worker.send_debug({"to": "someone@example.org", "subject": "refused", "text": "x"})
    assert (status, answer["error"]["code"]) == (503, "relay_busy"), answer
    subjects = [subject for _, subject in relay.accepted]
    assert subjects == [f"warm {tag}" for tag in tags], subjects
    assert relay.connections == 6, relay.connections
