"""A stand-in for the static site that embeds a form, on its own loopback origin, plus a fake
of Cloudflare's Turnstile siteverify endpoint (token `pass-token` passes, anything else fails)."""

import html
import json

import devstack
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CONTACT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Contact</title></head>
<body>
<h1>Contact us</h1>
<form action="{worker}/v1/forms/contact" method="post" enctype="multipart/form-data">
  <label>Name <input name="name" id="name"></label>
  <label>E-mail <input name="email" id="email" type="email"></label>
  <label><input type="checkbox" name="topic" value="sales" id="topic-sales"> Sales</label>
  <label><input type="checkbox" name="topic" value="support" id="topic-support"> Support</label>
  <label>Message <textarea name="message" id="message"></textarea></label>
  <label>File <input type="file" name="upload" id="upload"></label>
  <input type="text" name="_gotcha" style="display:none" tabindex="-1" autocomplete="off">
  <button type="submit" id="send">Send</button>
</form>
</body></html>
"""

RESULT_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body><h1 id="result">{title}</h1><p id="query">{query}</p></body></html>"""

PASSING_TOKEN = "pass-token"


class Site:
    def __init__(self, port: int = 0):
        self.worker = None  # set before pages are requested
        self.verifications = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def send_page(self, status, body, content_type="text/html; charset=utf-8"):
                data = body.encode()
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                path, _, query = self.path.partition("?")
                if path == "/contact.html":
                    self.send_page(200, CONTACT_PAGE.format(worker=site.worker))
                elif path in ("/thanks.html", "/oops.html"):
                    title = "Thanks" if path == "/thanks.html" else "Oops"
                    self.send_page(200, RESULT_PAGE.format(title=title, query=html.escape(urllib.parse.unquote_plus(query))))
                else:
                    self.send_page(404, "not found")

            def do_POST(self):
                length = int(self.headers.get("content-length", 0))
                fields = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                if self.path != "/siteverify":
                    return self.send_page(404, "not found")
                site.verifications.append(fields)
                ok = fields.get("secret") == "test-turnstile-secret" and fields.get("response") == PASSING_TOKEN
                answer = {"success": ok} if ok else {"success": False, "error-codes": ["invalid-input-response"]}
                self.send_page(200, json.dumps(answer), "application/json")

        # Port 0: the system picks a free port as it binds, so no other process can take it first.
        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self):
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def forms(self) -> dict:
        """FORMS for the test Worker: the www demo's forms and the site's."""
        return {
            **devstack.DEMO_FORMS,
            "contact": {
                "to": ["Site Owner <owner@example.org>"],
                "subject": "New message from {{name}}",
                "redirect": f"{self.origin}/thanks.html",
                "error_redirect": f"{self.origin}/oops.html",
                "allowed_origins": [self.origin],
                "honeypot": "_gotcha",
                "max_files": 2,
                "max_file_bytes": 2_000_000,
                "allowed_file_types": ["text/*", "image/*", "application/pdf"],
                "rate_limit_per_minute": 1000,
            },
            "plain": {"to": "owner@example.org", "rate_limit_per_minute": 1000},
            "captcha": {"to": "owner@example.org", "turnstile": True, "rate_limit_per_minute": 1000},
            "limited": {"to": "owner@example.org", "rate_limit_per_minute": 3},
        }

    def worker_vars(self) -> dict:
        return {
            "FORMS": json.dumps(self.forms()),
            "TURNSTILE_SECRET": "test-turnstile-secret",
            "TURNSTILE_VERIFY_URL": f"{self.origin}/siteverify",
        }
