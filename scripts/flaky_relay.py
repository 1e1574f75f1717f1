"""An SMTP relay on 127.0.0.1 that fails on purpose, for measuring and testing what a Worker does
when its relay misbehaves. Postfix (scripts/local_relay.py) is the relay that behaves; this one
speaks enough ESMTP to stand in for it (STARTTLS with the local CA's `localhost` certificate,
AUTH PLAIN and LOGIN, PIPELINING, CHUNKING, 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES) and, on a
schedule or at random from a seed, does one of:

- `greeting_421`: answers a new connection `421` and closes it (a relay at its connection limit);
- `mail_451`: refuses MAIL with `451` (a transient local problem); the rest of the flight is
  answered `503` and the connection stays open;
- `close_mid_message`: reads part of the message, then closes without a word.

Every message it accepts is kept in `accepted` (its Message-ID and subject), so a caller can
count losses and duplicates exactly. Used by `scripts/bench --flaky` and tests/e2e/test_warm.py.
"""

import asyncio
import base64
import email
import email.policy
import random
import ssl
import threading
from pathlib import Path

FAULTS = ("greeting_421", "mail_451", "close_mid_message")


class FlakyRelay:
    """Runs in a thread of its own; `port` is where it listens.

    `schedule` lists faults to happen in order (the greeting of the next connection takes a
    `greeting_421`, the next MAIL takes the others); with none left, `odds` (fault →
    probability, per connection or per transaction) draws from a `random.Random(seed)`."""

    def __init__(self, tls_dir: Path, user: str, password: str, port: int, schedule=None, odds=None, seed: int = 1):
        self.user, self.password, self.port = user, password, port
        self.schedule = list(schedule or [])
        self.odds = dict(odds or {})
        self.random = random.Random(seed)
        self.accepted = []  # (message_id, subject) of each message taken, in order
        self.faults = []  # each fault as it happened
        self.connections = 0
        self.lock = threading.Lock()
        self.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.tls.load_cert_chain(tls_dir / "localhost.pem", tls_dir / "localhost.key")
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(self.listen(), self.loop).result(timeout=10)

    async def listen(self):
        self.server = await asyncio.start_server(self.connection, "127.0.0.1", self.port)

    def stop(self):
        self.loop.call_soon_threadsafe(self.server.close)

    def plan(self, *faults: str):
        """Faults to happen next, in order, before any drawn at random."""
        with self.lock:
            self.schedule.extend(faults)

    def next_fault(self, allowed: tuple):
        """The next planned fault when it is of a kind `allowed` here; else, with nothing planned,
        a random draw."""
        with self.lock:
            if self.schedule:
                return self.schedule.pop(0) if self.schedule[0] in allowed else None
            for fault in allowed:
                if self.random.random() < self.odds.get(fault, 0.0):
                    return fault
            return None

    def happened(self, fault: str):
        with self.lock:
            self.faults.append(fault)

    async def connection(self, reader, writer):
        try:
            await Conversation(self, reader, writer).run()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()


class Conversation:
    def __init__(self, relay: FlakyRelay, reader, writer):
        self.relay, self.reader, self.writer = relay, reader, writer
        self.secure = self.authenticated = False
        self.mail_ok = False
        self.recipients = 0
        self.closing = False  # close_mid_message drawn for this transaction

    def say(self, *lines: str):
        self.writer.write("".join(line + "\r\n" for line in lines).encode())

    def capabilities(self) -> list:
        caps = ["250-relay.flaky", "250-PIPELINING", "250-SIZE 52428800", "250-8BITMIME", "250-SMTPUTF8",
                "250-ENHANCEDSTATUSCODES", "250-CHUNKING"]
        caps.append("250-AUTH PLAIN LOGIN" if self.secure else "250-STARTTLS")
        caps.append("250 DSN")
        return caps

    async def run(self):
        relay = self.relay
        with relay.lock:
            relay.connections += 1
        if relay.next_fault(("greeting_421",)) == "greeting_421":
            relay.happened("greeting_421")
            self.say("421 4.3.2 relay.flaky Service not available, closing channel")
            await self.writer.drain()
            return
        self.say("220 relay.flaky ESMTP")
        while True:
            await self.writer.drain()
            line = (await self.reader.readline()).decode("utf-8", "replace")
            if not line:
                return
            verb, _, rest = line.rstrip("\r\n").partition(" ")
            verb = verb.upper()
            if verb in ("EHLO", "HELO"):
                self.say(*self.capabilities())
            elif verb == "STARTTLS" and not self.secure:
                self.say("220 2.0.0 Ready to start TLS")
                await self.writer.drain()
                await self.writer.start_tls(self.relay.tls)
                self.secure = True
            elif verb == "AUTH" and self.secure:
                await self.auth(rest)
            elif verb == "MAIL":
                await self.mail()
            elif verb == "RCPT":
                self.recipients += self.mail_ok
                self.say("250 2.1.5 Ok" if self.mail_ok else "503 5.5.1 Error: need MAIL command")
            elif verb == "BDAT":
                size = int(rest.split(" ")[0])
                if self.dying():
                    await self.reader.readexactly(size // 2)
                    return self.die()
                await self.message(await self.reader.readexactly(size))
            elif verb == "DATA":
                if not self.mail_ok or not self.recipients:
                    self.say("503 5.5.1 Error: need RCPT command")
                    continue
                self.say("354 End data with <CR><LF>.<CR><LF>")
                await self.writer.drain()
                if self.dying():
                    await self.reader.read(1)
                    return self.die()
                data = await self.reader.readuntil(b"\r\n.\r\n")
                await self.message(data[:-3].replace(b"\r\n..", b"\r\n."))
            elif verb == "RSET":
                self.mail_ok, self.recipients = False, 0
                self.say("250 2.0.0 Ok")
            elif verb == "NOOP":
                self.say("250 2.0.0 Ok")
            elif verb == "QUIT":
                self.say("221 2.0.0 Bye")
                await self.writer.drain()
                return
            else:
                self.say("502 5.5.2 Error: command not recognized")

    async def auth(self, rest: str):
        mechanism, _, initial = rest.partition(" ")
        if mechanism.upper() == "PLAIN":
            _, user, password = base64.b64decode(initial).decode().split("\0")
        elif mechanism.upper() == "LOGIN":
            self.say("334 VXNlcm5hbWU6")
            await self.writer.drain()
            user = base64.b64decode(await self.reader.readline()).decode()
            self.say("334 UGFzc3dvcmQ6")
            await self.writer.drain()
            password = base64.b64decode(await self.reader.readline()).decode()
        else:
            self.say("504 5.5.4 Unrecognized authentication type")
            return
        self.authenticated = (user, password) == (self.relay.user, self.relay.password)
        self.say("235 2.7.0 Authentication successful" if self.authenticated
                 else "535 5.7.8 Error: authentication failed")

    async def mail(self):
        if not self.authenticated:
            self.say("530 5.7.0 Authentication required")
            return
        self.recipients = 0
        fault = self.relay.next_fault(("mail_451", "close_mid_message"))
        self.closing = fault == "close_mid_message"
        if fault == "mail_451":
            self.relay.happened("mail_451")
            self.mail_ok = False
            self.say("451 4.3.0 Error: queue file write error")
            return
        self.mail_ok = True
        self.say("250 2.1.0 Ok")

    def dying(self) -> bool:
        """Whether this transaction's message is to be cut off (close_mid_message)."""
        return self.closing and self.mail_ok and self.recipients > 0

    def die(self):
        """Closes while the message arrives, as a relay that crashed: no answer to it, ever."""
        self.relay.happened("close_mid_message")
        self.writer.transport.abort()

    async def message(self, data: bytes):
        """Answers one whole message."""
        if not self.mail_ok or not self.recipients:
            self.say("503 5.5.1 Error: need RCPT command")
            return
        parsed = email.message_from_bytes(data, policy=email.policy.default)
        with self.relay.lock:
            self.relay.accepted.append((str(parsed["Message-ID"]), str(parsed["Subject"])))
        self.mail_ok, self.recipients = False, 0
        self.say("250 2.0.0 Ok: queued")
