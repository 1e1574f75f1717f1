"""The www/ page in Debian's Chromium, served by wrangler dev: the flow and the error table
match the Worker's own definitions, the demo plays back a real send and explains a refusal,
and a deployment without a demo form shows no form. Screenshots go to .local/screenshots/."""

import email
import email.policy
import email.utils
import json
import subprocess
import urllib.request
import uuid

import pytest

from conftest import ROOT

SCREENSHOTS = ROOT / ".local" / "screenshots"


@pytest.fixture(scope="module")
def page(stack, client):
    without_demo = stack.start_workers({"no_demo": {"FORMS": "{}"}})["no_demo"]
    name = f"Page Visitor {uuid.uuid4().hex[:6]}"
    run = subprocess.run(
        ["node", str(ROOT / "tests/browser/www_page.mjs"), stack.base_url, str(SCREENSHOTS), name, without_demo.base_url],
        capture_output=True, text=True, timeout=180, cwd=ROOT)
    if run.returncode != 0:
        # What the shared Worker was doing, for a failure that does not come back when test_www
        # runs alone: its wrangler still running or not, / asked again, the end of its log.
        try:
            with urllib.request.urlopen(stack.base_url + "/", timeout=30) as response:
                again = response.status
        except Exception as error:  # noqa: BLE001 - any answer or failure is what we report
            again = repr(error)
        running = stack.wrangler.poll() is None
        pytest.fail(f"{run.stderr}\nGET / again: {again}; wrangler running: {running}\n"
                    f"shared Worker's log:\n{stack.log_tail(60)}")
    result = json.loads(run.stdout.strip().splitlines()[-1])
    result["name"] = name
    status, _, raw = client.request("GET", "/v1/errors")
    assert status == 200
    result["source"] = json.loads(raw)
    return result


def test_the_error_table_is_a_static_json_file_with_every_code(client):
    # www/v1/errors, answered by the assets in front of the Worker (tests/www.rs holds it to
    # src/error.rs); only GET and HEAD are answered, as for every static file.
    status, headers, raw = client.request("GET", "/v1/errors")
    headers = {k.lower(): v for k, v in headers.items()}
    assert status == 200 and headers["content-type"] == "application/json; charset=utf-8"
    table = json.loads(raw)
    codes = [row["code"] for row in table["errors"]]
    assert "relay_unreachable" in codes and "misconfigured" in codes and len(codes) == len(set(codes))
    assert all(row["meaning"] and row["remedy"] and 400 <= row["status"] < 600 for row in table["errors"])
    status, _, _ = client.request("POST", "/v1/errors", b"{}")
    assert status == 405


def test_page_is_served_with_a_strict_csp_and_no_outside_resources(stack):
    with urllib.request.urlopen(stack.base_url + "/") as response:
        csp = response.headers["content-security-policy"]
        html = response.read().decode()
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert "://" not in html, "the page refers to another host"
    assert '<link rel="icon" href="/favicon.svg"' in html
    with urllib.request.urlopen(stack.base_url + "/favicon.svg") as response:
        assert response.status == 200 and "svg" in response.headers["content-type"]
    with urllib.request.urlopen(stack.base_url + "/dashboard") as response:
        assert response.headers["content-security-policy"] == csp
        assert "://" not in response.read().decode(), "the dashboard refers to another host"
    for asset in ("/app.js", "/dom.js", "/dashboard.js", "/style.css"):
        with urllib.request.urlopen(stack.base_url + asset) as response:
            text = response.read().decode()
        assert "://" not in text.replace('"://"', ""), f"{asset} refers to another host"


def test_flow_shows_every_step_with_what_can_fail_there(page):
    source_steps = [s["id"] for s in page["source"]["steps"]]
    assert [s["id"] for s in page["steps"]] == source_steps
    assert source_steps[:5] == ["request", "validation", "mime", "queue", "connect"]
    assert source_steps[-3:] == ["answer", "quit", "report"]
    by_step = {s["id"]: s["risks"] for s in page["steps"]}
    assert "storage_unavailable" in by_step["queue"]
    assert "relay_tls_failed" in by_step["tls"]
    assert "relay_rejected_recipient" in by_step["rcpt"]
    assert "delivery_unknown" in by_step["data"]


def test_the_queued_statuses_are_the_workers_own(page):
    assert page["statuses"] == [s["status"] for s in page["source"]["statuses"]]
    assert page["statuses"] == ["queued", "sending", "sent", "delivered", "bounced", "failed", "unknown"]


def test_error_table_is_the_workers_own(page):
    rows = page["table"]
    source = page["source"]["errors"]
    assert [r["code"] for r in rows] == [e["code"] for e in source]
    for row, spec in zip(rows, source):
        assert (row["status"], row["retryable"], row["meaning"], row["remedy"]) == \
               (spec["status"], spec["retryable"], spec["meaning"], spec["remedy"])
        assert row["smtp"] == (", ".join(str(c) for c in spec["smtp"]) or "—")
    shown = " ".join(r["smtp"] for r in rows)
    for reply in (421, 450, 451, 452, 503, 530, 535, 550, 552, 554):
        assert str(reply) in shown


def test_demo_plays_back_the_transcript_of_the_send_and_the_received_message(page, stack):
    assert page["status"].startswith("Sent: the relay answered 250")
    lines = [(side, line) for _, side, line in page["transcript"]]
    sent = [line for side, line in lines if side == "client" and not line.startswith("<")]  # not our notes
    if sent[0].startswith("EHLO "):  # a session opened for this send
        assert "STARTTLS" in sent and "AUTH PLAIN ***" in sent
    else:  # a warm one: the transaction alone, in one round trip
        assert sent[0].startswith(("MAIL FROM:", "RSET")), sent
        assert "in 1 round trip" in page["status"] and "warm session" in page["status"], page["status"]
    assert any(l.startswith("MAIL FROM:") for l in sent) and any(l.startswith("BDAT ") for l in sent)
    assert lines[-1][0] == "relay" and lines[-1][1].startswith("250 2.0.0")
    assert not any(stack.creds["relay_password"] in line for _, line in lines)
    received = email.message_from_string(page["received"], policy=email.policy.default)
    assert received["Subject"] == f"Demo message from {page['name']}"
    assert email.utils.parseaddr(received["Reply-To"])[1] == "visitor@example.net"


def test_the_received_message_is_shown_whole_and_no_word_is_split_and_codes_are_on_demand(page):
    assert page["receivedBox"] == {"maxHeight": "none", "clipped": False}, page["receivedBox"]
    assert "break-all" not in page["wordBreaks"], page["wordBreaks"]
    assert page["codeLists"] >= 10 and page["openCodeLists"] == 0, (page["codeLists"], page["openCodeLists"])


def test_a_second_demo_send_takes_one_round_trip_on_the_warm_session(page):
    assert page["secondStatus"].startswith("Sent: the relay answered 250"), page["secondStatus"]
    assert "in 1 round trip on a warm session" in page["secondStatus"], page["secondStatus"]


def test_demo_refusal_shows_the_code_and_its_explanation(page):
    spec = next(e for e in page["source"]["errors"] if e["code"] == "relay_rejected_recipient")
    assert page["refusal"]["code"] == "relay_rejected_recipient"
    assert "550 5.1.1" in page["refusal"]["text"]
    assert spec["meaning"] in page["refusal"]["text"] and spec["remedy"] in page["refusal"]["text"]


def test_page_leads_with_the_demo_and_heads_failures_in_words(page):
    assert page["order"] == ["demo", "flow", "errors"]
    # The whole demo form, both buttons included, in the first screen at both widths (1280 x 900
    # and a 390 x 844 phone); the screenshots of just that screen are kept beside the others.
    for width, screen in page["firstScreen"].items():
        assert screen["scrollY"] == 0 and 0 < screen["title"], (width, screen)
        assert max(screen["buttons"]) <= screen["height"], (width, screen)
        assert (SCREENSHOTS / f"www-{width}-first-screen.png").stat().st_size > 10_000
    assert page["refusalHeading"] == "The relay refused every recipient; nothing was delivered"


def test_the_demo_checks_the_local_relay_step_by_step_and_the_page_links_the_openapi_document(page):
    steps = ["connect", "greeting", "ehlo", "starttls", "tls", "ehlo_tls", "auth"]
    assert page["relaySteps"] == [[step, "ok"] for step in steps], page["relaySteps"]
    assert page["relayStatus"].startswith("The relay is ready: every step passed. It offers ")
    assert page["openapiLink"] >= 1


def test_error_table_filters_as_one_types(page):
    expected = [e["code"] for e in page["source"]["errors"]
                if "550" in " ".join(str(c) for c in e["smtp"]) or "550" in e["meaning"] + e["remedy"]]
    assert page["filtered"] and page["filtered"] == expected
    assert page["filterCount"] == f"{len(expected)} of {len(page['source']['errors'])} codes"


def test_axe_finds_no_serious_or_critical_violation_at_either_width(page):
    for width in (1280, 390):
        bad = [v for v in page[f"axe{width}"] if v["impact"] in ("serious", "critical")]
        assert bad == [], f"at {width}px: {bad}"


def test_page_is_accessible_and_fits_a_phone(page):
    assert page["unlabelled"] == []
    # No 404 for a favicon, no script error.
    assert page["consoleErrors"] == []
    assert page["phoneOverflow"] <= 0
    assert page["phoneCards"] is True
    assert page["phoneTableOverflow"] <= 0
    for shot in ("www-desktop.png", "www-demo-sent.png", "www-demo-refused.png", "www-relay-check.png", "www-phone.png"):
        assert (SCREENSHOTS / shot).stat().st_size > 10_000


def test_without_a_demo_form_there_is_no_form_to_abuse(page):
    assert page["withoutDemo"] == {"demoVisible": False, "forms": 0, "rows": len(page["source"]["errors"])}
