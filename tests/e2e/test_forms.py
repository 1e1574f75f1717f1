"""Web forms end to end: a real browser posts a plain HTML form with a file; fetch-style JSON
with CORS; the honeypot; Turnstile against a fake siteverify; the rate limit; unknown forms."""

import email.utils
import json
import subprocess
import urllib.parse
import uuid

from conftest import ROOT, without_id


def form_post(client, form, fields, headers=None, accept_json=False):
    body = urllib.parse.urlencode(fields, doseq=True).encode()
    all_headers = {"content-type": "application/x-www-form-urlencoded", **(headers or {})}
    if accept_json:
        all_headers["accept"] = "application/json"
    return client.request("POST", f"/v1/forms/{form}", body, headers=all_headers)


def lower(headers):
    return {k.lower(): v for k, v in headers.items()}


def test_browser_submits_the_plain_form_with_a_file_and_lands_on_the_thank_you_page(client, site, tmp_path):
    name = f"Ada {uuid.uuid4().hex[:8]}"
    upload = tmp_path / "notes.txt"
    upload.write_text("attached from the browser\n")
    run = subprocess.run(["node", str(ROOT / "tests/browser/contact_form.mjs"), site.origin, str(upload), name],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    landed = json.loads(run.stdout.strip().splitlines()[-1])
    assert landed["url"] == f"{site.origin}/thanks.html", landed
    assert landed["heading"] == "Thanks"

    _, message = client.wait_for_message(name.split()[1])
    assert message["Subject"] == f"New message from {name}"
    assert email.utils.parseaddr(message["From"])[1] == "noreply@edge-mailer.localhost"
    assert email.utils.parseaddr(message["Reply-To"])[1] == "visitor@example.net"
    assert email.utils.parseaddr(message["To"])[1] == "owner@example.org"
    text = message.get_body(preferencelist=("plain",)).get_content()
    # Every field, in order, the repeated checkbox twice, the honeypot not at all.
    lines = [line for line in text.splitlines() if line and not line.startswith("New submission")]
    assert lines[:4] == [f"name: {name}", "email: visitor@example.net", "topic: sales", "topic: support"], lines
    assert "_gotcha" not in text
    html_part = message.get_body(preferencelist=("html",)).get_content()
    assert "Second line: äöü ✓" in html_part
    attachments = list(message.iter_attachments())
    assert [a.get_filename() for a in attachments] == ["notes.txt"]
    assert attachments[0].get_content().strip() == "attached from the browser"


def test_fetch_from_an_allowed_origin_gets_json_and_cors(client, site):
    origin = {"origin": site.origin}
    status, headers, raw = client.request("OPTIONS", "/v1/forms/contact", None,
                                          headers={**origin, "access-control-request-method": "POST"})
    assert status == 204
    assert lower(headers)["access-control-allow-origin"] == site.origin
    status, headers, raw = form_post(client, "contact", {"name": "Fetch", "message": "hi"}, origin, accept_json=True)
    assert status == 200, raw
    answer = json.loads(raw)
    assert answer["ok"] is True and len(answer["id"]) == 36, answer  # queued: the id (a UUID) to follow it by
    assert lower(headers)["access-control-allow-origin"] == site.origin


def test_another_origin_is_refused_and_gets_no_cors(client):
    evil = {"origin": "https://evil.example"}
    status, headers, _ = client.request("OPTIONS", "/v1/forms/contact", None, headers=evil)
    assert status == 403 and "access-control-allow-origin" not in lower(headers)
    status, headers, raw = form_post(client, "contact", {"name": "x"}, evil, accept_json=True)
    assert status == 403
    assert json.loads(raw)["error"]["code"] == "forbidden_origin"
    assert "access-control-allow-origin" not in lower(headers)
    # Referer counts when there is no Origin.
    status, _, raw = form_post(client, "contact", {"name": "x"}, {"referer": "https://evil.example/page"}, accept_json=True)
    assert status == 403
    assert json.loads(raw)["error"]["message"].endswith("this one came from https://evil.example")
    # With neither, the answer says so rather than naming an origin.
    status, _, raw = form_post(client, "contact", {"name": "x"}, accept_json=True)
    assert status == 403
    assert json.loads(raw)["error"]["message"] == \
        "this form accepts posts only from its allowed origins; this one came without an Origin or Referer header"


def test_browser_errors_redirect_to_the_error_page_with_code_and_message(client, site):
    status, headers, raw = form_post(client, "contact", {"name": "x", "message": "y"}, {"origin": "https://evil.example"})
    assert status == 303
    # A redirect has no body, so it says no content type (it said application/octet-stream).
    assert raw == b"" and "content-type" not in lower(headers), headers
    location = urllib.parse.urlsplit(lower(headers)["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == f"{site.origin}/oops.html"
    query = dict(urllib.parse.parse_qsl(location.query))
    assert query["error"] == "forbidden_origin"
    assert "origin" in query["message"]


def test_built_in_pages_without_configured_redirects(client):
    """The built-in pages lead back to the page the form was on, without script (their CSP
    allows none); a submission with nothing filled in gets the error page, not a message."""
    tag = uuid.uuid4().hex[:8]
    back = {"referer": "https://site.example/contact.html"}
    status, headers, raw = form_post(client, "plain", {"name": tag, "message": "hello"}, back)
    assert status == 200, raw
    assert "text/html" in lower(headers)["content-type"]
    assert b"Thank you" in raw
    assert b'<a href="https://site.example/contact.html">Back to the form</a>' in raw
    client.wait_for_message(tag)
    status, headers, raw = form_post(client, "plain", {"name": "", "message": " "}, back)
    assert status == 422, raw
    assert b"Your message was not sent" in raw and b"<code>validation_failed</code>" in raw
    assert b'<a href="https://site.example/contact.html">Back to the form</a>' in raw


def test_honeypot_looks_like_success_and_sends_nothing(client, site):
    tag = uuid.uuid4().hex
    fields = {"name": tag, "message": "buy now", "_gotcha": "I am a bot"}
    status, headers, _ = form_post(client, "contact", fields, {"origin": site.origin})
    assert status == 303 and lower(headers)["location"] == f"{site.origin}/thanks.html"
    status, _, raw = form_post(client, "contact", fields, {"origin": site.origin}, accept_json=True)
    assert (status, without_id(json.loads(raw))) == (200, {"ok": True}), "a bot sees what a person sees"
    client.assert_no_message(tag)


def test_turnstile_pass_and_fail(client, site):
    tag = uuid.uuid4().hex
    for index, (token, expected) in enumerate((("pass-token", 200), ("forged", 403), (None, 403))):
        fields = {"name": f"{tag}-{index}", "message": "x"}
        if token:
            fields["cf-turnstile-response"] = token
        status, _, raw = form_post(client, "captcha", fields, accept_json=True)
        assert status == expected, (token, raw)
        if expected == 403:
            assert json.loads(raw)["error"]["code"] == "captcha_failed"
    sent, _ = client.wait_for_message(f"{tag}-0")
    client.assert_no_message(f"{tag}-1")
    client.assert_no_message(f"{tag}-2")
    # The fake saw our secret and the token; the token never went into the message.
    assert any(v.get("response") == "pass-token" for v in site.verifications)
    assert b"pass-token" not in sent and b"cf-turnstile-response" not in sent


def test_rate_limit_answers_429_with_retry_after_after_the_configured_count(client):
    client_ip = {"cf-connecting-ip": f"198.51.100.{uuid.uuid4().int % 250}"}
    answers = [form_post(client, "limited", {"n": str(i)}, client_ip, accept_json=True) for i in range(4)]
    assert [a[0] for a in answers[:3]] == [200, 200, 200]
    status, headers, raw = answers[3]
    assert status == 429, raw
    assert json.loads(raw)["error"]["code"] == "rate_limited"
    assert int(lower(headers)["retry-after"]) > 0


def test_unknown_form_is_404(client):
    status, _, raw = form_post(client, "nope", {"a": "b"}, accept_json=True)
    assert status == 404
    assert json.loads(raw)["error"]["code"] == "not_found"
    status, headers, raw = form_post(client, "nope", {"a": "b"})
    assert status == 404 and b"<code>not_found</code>" in raw


def test_field_values_never_reach_headers(client, site):
    tag = uuid.uuid4().hex[:10]
    fields = {"name": f"{tag}\r\nBcc: victim@evil.example", "email": "x@example.net\r\nBcc: v@evil.example",
              "Subject": "overridden?", "To": "victim@evil.example", "message": "m"}
    status, _, raw = form_post(client, "contact", fields, {"origin": site.origin}, accept_json=True)
    assert status == 200, raw
    _, message = client.wait_for_message(tag)
    assert message["Subject"] == f"New message from {tag} Bcc: victim@evil.example"
    assert message["Reply-To"] is None, "an invalid e-mail field is not used"
    assert [email.utils.parseaddr(message["To"])[1]] == ["owner@example.org"]
    assert message["Bcc"] is None
