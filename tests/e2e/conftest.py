"""Fixtures for the end-to-end tests: one local stack (Postfix relay + `wrangler dev`) for the
whole session, on free loopback ports, in a temporary directory; stopped at the end."""

import email
import email.policy
import json
import re
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import devstack  # noqa: E402
from site_fixture import Site  # noqa: E402
from webhook_receiver import Receiver  # noqa: E402


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


NO_REDIRECT = urllib.request.build_opener(_NoRedirect)


# The requests wrangler dev's proxy dropped and the tests sent again, listed at the end of a run.
DROPPED = []


def send_again_if_dropped(send, what: str, body_at: int = 2, attempts: int = 3):
    """send() → (status, …, body at `body_at`, …), sent again when wrangler dev's proxy lost it
    before the Worker saw it (devstack.WRANGLER_DROPPED)."""
    for attempt in range(1, attempts + 1):
        answer = send()
        if not devstack.dropped_by_wrangler(answer[0], answer[body_at]) or attempt == attempts:
            return answer
        DROPPED.append(what)


def pytest_terminal_summary(terminalreporter):
    if DROPPED:
        terminalreporter.write_line(f"wrangler dev's proxy dropped {len(DROPPED)} request(s), sent again "
                                    f"(workers-sdk #14641): {', '.join(DROPPED)}")


def without_id(answer: dict) -> dict:
    """A form's answer without the id of its message's record (a UUID, always there: a bot
    caught by the honeypot gets one too)."""
    answer = dict(answer)
    message_id = answer.pop("id", None)
    assert isinstance(message_id, str) and len(message_id) == 36, answer
    return answer


class Client:
    def __init__(self, stack: "devstack.Stack"):
        self.stack = stack

    def request(self, method: str, path: str, body=None, headers=None, api_key=None):
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        request = urllib.request.Request(self.stack.base_url + path, data=data, method=method)
        request.add_header("content-type", "application/json")
        if api_key:
            request.add_header("authorization", f"Bearer {api_key}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        return send_again_if_dropped(lambda: self.open(request), f"{method} {path}")

    @staticmethod
    def open(request):
        try:
            # Redirects are answers under test here, never followed.
            with NO_REDIRECT.open(request, timeout=90) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def send(self, body, api_key: str | None = "default"):
        key = self.stack.api_key if api_key == "default" else api_key
        status, headers, raw = self.request("POST", "/v1/send", body, api_key=key)
        return status, headers, json.loads(raw)

    def send_debug(self, body):
        status, headers, raw = self.request("POST", "/v1/send?debug=1", body, api_key=self.stack.api_key)
        return status, headers, json.loads(raw)

    def messages_with(self, tag: str) -> list:
        """The raw received messages that contain `tag` (a uuid in the subject, a Message-ID).
        Other tests deliver into the same inbox, so only a unique tag says which message is whose."""
        paths = sorted(self.stack.inbox.iterdir()) if self.stack.inbox.exists() else []
        return [raw for raw in (path.read_bytes() for path in paths) if tag.encode() in raw]

    def wait_for_message(self, tag: str, timeout: float = 20):
        """The first received message that contains `tag`, raw and parsed by Python's email."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.messages_with(tag)
            if found:
                return found[0], email.message_from_bytes(found[0], policy=email.policy.default)
            if time.monotonic() > deadline:
                raise AssertionError(f"no message containing {tag!r} arrived in {self.stack.inbox} within {timeout}s")
            time.sleep(0.2)

    def assert_no_message(self, tag: str, within: float = 3, besides: int = 0) -> None:
        """Watches the inbox for `within` seconds and fails as soon as more than `besides` messages
        contain `tag` (Postfix delivers asynchronously, so a wrong delivery can come late)."""
        deadline = time.monotonic() + within
        while True:
            count = len(self.messages_with(tag))
            assert count <= besides, f"{count} message(s) containing {tag!r} arrived; expected at most {besides}"
            if time.monotonic() > deadline:
                return
            time.sleep(0.2)


def restart_relay(stack: "devstack.Stack", stopped=None) -> None:
    """Stops the stack's Postfix, runs `stopped()` meanwhile, and starts it again (waiting for
    the old master to let go of its ports)."""
    devstack.local_relay.stop(stack.relay_dir)
    try:
        if stopped:
            stopped()
    finally:
        for _ in range(100):
            try:
                devstack.local_relay.start(stack.relay_dir, stack.relay_ports, stack.creds["relay_user"],
                                           stack.creds["relay_password"])
                return
            except devstack.local_relay.PortInUse:
                time.sleep(0.1)
        raise AssertionError("the relay did not start again")


def connection_of(stack: "devstack.Stack", reply: str, timeout: float = 10) -> str:
    """The SMTP connection that queued the message of `reply` ("Ok: … queued as 4819D51C37A"):
    the smtpd process that logged `<queue id>: client=`, and the line where that process's
    current connection began (`connect from`). Postfix reuses an smtpd process for later
    connections, so the process alone does not name a connection."""
    queue_id = re.search(r"queued as ([0-9A-Za-z]+)", reply).group(1)
    log = stack.relay_dir / "maillog"
    deadline = time.monotonic() + timeout
    while True:
        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        for i, line in enumerate(lines):
            if f": {queue_id}: client=" in line:
                process = re.search(r" (\S+\[\d+\]): ", line).group(1)
                start = next(j for j in range(i, -1, -1) if f" {process}: connect from " in lines[j])
                return f"{process} from line {start}"
        if time.monotonic() > deadline:
            raise AssertionError(f"Postfix logged no client line for {queue_id} within {timeout}s")
        time.sleep(0.2)


def relay_session(stack: "devstack.Stack", reply: str, timeout: float = 10) -> str:
    """Postfix's summary of the SMTP session that queued a message: the `disconnect from` line
    with its command counts (`ehlo=2 starttls=1 auth=1 mail=1 rcpt=2 bdat=1 quit=1 commands=9`).

    `reply` is the relay's final reply as the API passes it on ("Ok: 676 bytes queued as
    4819D51C37A"); its queue id finds the smtpd process that took the message (`smtpd[pid]:
    4819D51C37A: client=...`), and that process's next `disconnect from` line ends the session,
    whatever other sessions are logged in between."""
    match = re.search(r"queued as ([0-9A-Za-z]+)", reply)
    assert match, f"no queue id in the relay's reply {reply!r}"
    queue_id = match.group(1)
    log = stack.relay_dir / "maillog"
    deadline = time.monotonic() + timeout
    while True:
        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        queued = next((i for i, line in enumerate(lines) if f": {queue_id}: client=" in line), None)
        if queued is not None:
            process = re.search(r" (\S+\[\d+\]): ", lines[queued]).group(1)
            done = next((line for line in lines[queued + 1:] if f" {process}: disconnect from " in line), None)
            if done:
                return done
        if time.monotonic() > deadline:
            raise AssertionError(f"Postfix logged no finished session for queue id {queue_id} within {timeout}s")
        time.sleep(0.2)


@pytest.fixture(scope="session")
def site():
    s = Site()
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def stack(site):
    # Not pytest's tmp_path: that is private to root (0700) and Postfix runs as `postfix`.
    state = Path(tempfile.mkdtemp(prefix="edge-mailer-e2e-"))
    state.chmod(0o755)
    # Free ports of its choosing, chosen again if one is taken meanwhile.
    s = devstack.Stack(state, vars_file=state / "worker.vars", extra_vars=site.worker_vars(), keep_warm=True)
    try:
        s.start()
        site.worker = s.base_url
        yield s
    finally:
        s.stop()
        # The Workers' and the relay's logs outlive the run, for the next failure's diagnosis.
        logs = ROOT / ".local" / "e2e-logs"
        shutil.rmtree(logs, ignore_errors=True)
        logs.mkdir(parents=True)
        for log in [*state.glob("*.log"), state / "relay" / "maillog"]:
            if log.is_file():
                shutil.copy(log, logs / log.name)
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def receiver():
    """An app's webhook endpoint on 127.0.0.1, one per test module that asks for it."""
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()


@pytest.fixture(scope="session")
def client(stack):
    return Client(stack)
