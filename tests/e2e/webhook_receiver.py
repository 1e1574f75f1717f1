"""An app's webhook endpoint on 127.0.0.1, for the tests of Workers with `WEBHOOK_URL`."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """An app's webhook endpoint on 127.0.0.1: keeps every delivery; answers 500 to the first
    delivery of each webhook whose body holds one of `fail_first` (a subject's tag), and a
    redirect to /elsewhere to the first one holding one of `redirect_first`."""

    def __init__(self):
        self.received = []
        self.fail_first = set()
        self.redirect_first = set()
        self.failed = set()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
                headers = {name.lower(): value for name, value in self.headers.items()}
                with receiver.lock:
                    receiver.received.append({"body": body, "headers": headers, "at": time.monotonic()})
                    receiver.received[-1]["path"] = self.path
                    hook_id = headers.get("webhook-id")
                    first = hook_id not in receiver.failed
                    failing = first and any(t in body for t in receiver.fail_first)
                    moving = first and any(t in body for t in receiver.redirect_first)
                    if failing or moving:
                        receiver.failed.add(hook_id)
                if moving:
                    self.send_response(307)
                    self.send_header("location", "/elsewhere")
                else:
                    self.send_response(500 if failing else 200)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/edge-mailer"

    def of(self, email_id):
        with self.lock:
            return [r for r in self.received if json.loads(r["body"])["data"]["email_id"] == email_id]

    def deliveries(self, hook_id, count, timeout=60):
        """The first `count` deliveries of the webhook `hook_id`, once they came."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                got = [r for r in self.received if r["headers"].get("webhook-id") == hook_id]
            if len(got) >= count:
                return got
            assert time.monotonic() < deadline, f"{len(got)} deliveries of {hook_id}"
            time.sleep(0.3)

    def wait_for(self, email_id, types, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            got = {json.loads(r["body"])["type"] for r in self.of(email_id)}
            if set(types) <= got:
                return self.of(email_id)
            assert time.monotonic() < deadline, f"{types} not all received for {email_id}: {got}"
            time.sleep(0.3)
