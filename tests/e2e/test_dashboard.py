"""The dashboard (/dashboard) in Debian's Chromium, on a Worker of its own with the real Postfix:
first with nothing sent, then after sends of each outcome (sent and reported delivered, a
recipient the relay refuses, one refused among two, a bounce, one queued while the relay was
down and retried, one that failed after its last attempt). What the page shows is what the
API answers; a wrong key and a deployment without a ledger are told in words; a suppression is
removed through the confirmation; axe-core and a keyboard walk pass on every view, at 1280 x 900
and 390 x 844. Screenshots go to .local/screenshots/."""

import base64
import json
import os
import subprocess
import time
import urllib.parse
import uuid

import pytest

from conftest import ROOT, Client, restart_relay

SCREENSHOTS = ROOT / ".local" / "screenshots"
BOUNCE_DOMAIN = "dash.bounces.localhost"
SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()
TAG = uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def workers(stack, receiver):
    started = stack.start_workers({
        "dash": {"BOUNCE_DOMAIN": BOUNCE_DOMAIN, "WEBHOOK_URL": receiver.url, "WEBHOOK_SECRET": SECRET,
                 "WEBHOOK_RETRY_SECONDS": "1", "SMTP_SESSIONS": "0",
                 "DELIVERY_RETRY_SECONDS": "2,10", "DELIVERY_MAX_ATTEMPTS": "3"},
        "dash_no_ledger": {},
    }, without_bindings={"dash_no_ledger": ("DELIVERY_LEDGER",)})
    return Client(started["dash"]), Client(started["dash_no_ledger"])


def api(worker, method, path, body=None, headers=None):
    status, _, raw = worker.request(method, path, body, headers=headers, api_key=worker.stack.api_key)
    return status, json.loads(raw) if raw else None


def run_page(phase, worker, args):
    run = subprocess.run(["node", str(ROOT / "tests/browser/dashboard.mjs"), phase, worker.stack.base_url,
                          str(SCREENSHOTS), json.dumps(args)], capture_output=True, text=True, timeout=420, cwd=ROOT)
    assert run.returncode == 0, f"{run.stderr}\n{run.stdout[-2000:]}"
    return json.loads(run.stdout.strip().splitlines()[-1])


def record(worker, id):
    status, answer = api(worker, "GET", f"/v1/messages/{id}")
    assert status == 200, answer
    return answer


def wait(worker, id, done, timeout=90):
    deadline = time.monotonic() + timeout
    while True:
        answer = record(worker, id)
        if done(answer):
            return answer
        assert time.monotonic() < deadline, f"{id} not there in {timeout}s: {answer}"
        time.sleep(0.3)


def webhooks_settled(answer):
    hooks = answer.get("webhooks", [])
    return hooks and all(h["status"] == "delivered" for h in hooks)


@pytest.fixture(scope="module")
def empty(workers):
    """The page before this Worker sent anything."""
    worker, _ = workers
    return run_page("empty", worker, {"key": worker.stack.api_key})


@pytest.fixture(scope="module")
def sent(workers, empty, stack):
    """Sends of each outcome, settled: every message final, its reports and webhooks in."""
    worker, _ = workers
    ids = {}

    def sync(name, to, expected):
        subject = f"dash {name} {TAG}"
        status, _, answer = worker.send({"to": to, "subject": subject, "text": "x"})
        assert status == expected, answer
        if status == 200:
            ids[name] = answer["id"]
            return
        # A refusal answers the error alone; its record is written after the answer.
        deadline = time.monotonic() + 20
        while name not in ids:
            status, found = api(worker, "POST", "/v1/messages/search", {"q": subject})
            assert status == 200, found
            if found["messages"]:
                ids[name] = found["messages"][0]["id"]
            assert time.monotonic() < deadline, f"no record of {subject}"
            time.sleep(0.3)

    def queued(name, to):
        status, answer = api(worker, "POST", "/v1/send", {"to": to, "subject": f"dash {name} {TAG}", "text": "x"},
                             headers={"Prefer": "respond-async"})
        assert status == 202, answer
        ids[name] = answer["id"]

    def while_down():
        queued("retried", f"later-{TAG}@example.org")
        wait(worker, ids["retried"], lambda r: r["attempts"] >= 1, timeout=30)

    restart_relay(stack, while_down)
    sync("delivered", f"ok-{TAG}@example.org", 200)
    sync("refused", f"reject-{TAG}@example.org", 422)
    sync("partly", [f"ok2-{TAG}@example.org", f"reject-{TAG}-2@example.org"], 200)
    sync("bounced", f"bounce-{TAG}@example.org", 200)
    queued("failed", f"tempfail-{TAG}@example.org")
    for n in range(7):  # enough for a second page of ten
        sync(f"more{n}", f"more{n}-{TAG}@example.org", 200)
    status, entry = api(worker, "POST", "/v1/suppressions", {"address": f"manual-{TAG}@example.org",
                                                             "detail": "asked to be left out"})
    assert status == 201, entry

    # Postfix reports each message it delivered, and bounces bounce-*: every message ends
    # delivered, bounced or failed, and each of its webhooks is delivered.
    for name, id in ids.items():
        wait(worker, id, lambda r: r["status"] in ("delivered", "bounced", "failed") and webhooks_settled(r))
    return ids


@pytest.fixture(scope="module")
def page(workers, sent):
    worker, no_ledger = workers
    before = {hours: api(worker, "GET", f"/v1/stats?hours={hours}")[1] for hours in (24, 168)}
    args = {
        "key": worker.stack.api_key, "wrongKey": "dev-not-a-key-" + uuid.uuid4().hex,
        "ids": {name: sent[name] for name in ("retried", "refused", "failed", "delivered", "bounced", "partly")},
        "remove": f"manual-{TAG}@example.org", "noLedger": no_ledger.stack.base_url,
        "filters": [["failed", "failed", ""], ["search", "", f"reject-{TAG}"], ["none", "", f"nobody-{TAG}"]],
    }
    result = run_page("full", worker, args)
    after = {hours: api(worker, "GET", f"/v1/stats?hours={hours}")[1] for hours in (24, 168)}
    status, listed = api(worker, "GET", "/v1/messages?limit=100")
    assert status == 200
    result["api"] = {"stats": [before, after], "messages": listed["messages"],
                     "records": {name: record(worker, id) for name, id in sent.items()}}
    result["args"] = args
    return result


def sizes(result):
    return result["sizes"].items()


# ---- nothing yet ----------------------------------------------------------------------

def test_with_nothing_sent_each_view_says_so(empty):
    for size, seen in sizes(empty):
        assert seen["glance"]["state"]["text"].startswith("Nothing yet: no message was accepted"), (size, seen["glance"])
        assert all(counts == [0, 0] for counts in seen["glance"]["totals"].values()), seen["glance"]["totals"]
        assert seen["glance"]["answerSummary"] == "No attempt reached the relay in the last 24 hours."
        assert seen["messages"]["state"]["text"] == "Nothing yet: no message has been sent."
        assert seen["messages"]["pages"] == [[]]
        assert seen["suppressions"]["state"]["text"].startswith("No address is suppressed")
        assert seen["errors"] == [], seen["errors"]


# ---- at a glance ----------------------------------------------------------------------

def test_the_counts_are_the_apis_for_24_hours_and_7_days(page):
    stats = page["api"]["stats"]
    for size, seen in sizes(page):
        shown = seen["glance"]["totals"]
        matches = [all(shown[s] == [day["totals"][s], week["totals"][s]] for s in day["totals"])
                   for day, week in ((at[24], at[168]) for at in stats)]
        assert any(matches), (size, shown, stats)
        assert shown["all"][1] == len(page["api"]["messages"]), (shown, len(page["api"]["messages"]))
    by_status = {}
    for message in page["api"]["messages"]:
        by_status[message["status"]] = by_status.get(message["status"], 0) + 1
    assert by_status == {"delivered": 10, "bounced": 1, "failed": 2}, by_status


def test_the_chart_draws_each_hours_counts_by_status_and_the_relays_answer_times(page):
    for size, seen in sizes(page):
        glance = seen["glance"]
        for day in (at[24] for at in page["api"]["stats"]):
            expected = [{"hour": h["hour"], "statuses": {s: n for s, n in h["statuses"].items() if n}}
                        for h in day["per_hour"]]
            drawn = [{"hour": g["hour"], "statuses": g["statuses"]} for g in glance["chart"]]
            answers = sorted([name, h["relay_answer_ms"][name]] for h in day["per_hour"]
                             for name in ("p50", "p95") if h["relay_answer_ms"][name] is not None)
            if drawn == expected and sorted(glance["answers"]) == answers:
                break
        else:
            pytest.fail(f"{size}: the chart is not the API's: {glance['chart']} {glance['answers']}")
        assert len(glance["chart"]) == 24 and len(glance["hours"]) == 24
        assert glance["legend"] == ["queued", "sending", "sent", "delivered", "bounced", "failed", "unknown"]
        # The numbers without the chart: each bar's title, and the table of every hour.
        busiest = max(glance["chart"], key=lambda g: sum(g["statuses"].values()))
        assert all(f"{n} {s}" in busiest["title"] for s, n in busiest["statuses"].items()), busiest
        row = next(r for r in glance["hours"] if r["hour"] == busiest["hour"])
        assert [int(c) for c in row["cells"][:7]] == [busiest["statuses"].get(s, 0) for s in
                                                      ("queued", "sending", "sent", "delivered", "bounced", "failed", "unknown")]
        assert glance["answerSummary"].startswith("In the last 24 hours the relay answered "), glance["answerSummary"]


# ---- messages -------------------------------------------------------------------------

def test_the_list_is_newest_first_and_pages_by_ten(page):
    listed = page["api"]["messages"]
    for size, seen in sizes(page):
        pages = seen["messages"]["pages"]
        assert [len(p) for p in pages] == [10, 3], [len(p) for p in pages]
        rows = [row for p in pages for row in p]
        assert [r["id"] for r in rows] == [m["id"] for m in listed]
        for row, message in zip(rows, listed):
            assert (row["status"], row["attempts"], row["subject"]) == \
                   (message["status"], message["attempts"], message["subject"]), (row, message)
            assert row["to"] == ", ".join(message["to"])
        assert seen["messages"]["backToNewer"] == pages[0]
        assert seen["messages"]["lastPageLabel"] == "Page 2"


def test_the_list_filters_by_status_and_searches_recipients(page):
    records = page["api"]["records"]
    for size, seen in sizes(page):
        filtered = seen["messages"]["filtered"]
        assert sorted(r["id"] for r in filtered["failed"]["rows"]) == \
               sorted(records[n]["id"] for n in ("refused", "failed")), filtered["failed"]
        assert sorted(r["id"] for r in filtered["search"]["rows"]) == \
               sorted(records[n]["id"] for n in ("refused", "partly")), filtered["search"]
        assert filtered["none"]["rows"] == [] and filtered["none"]["state"]["text"].startswith("No message matches")


def timeline(page, name, size="desktop"):
    return page["sizes"][size]["timelines"][name]


def test_a_retried_message_shows_each_attempt_the_wait_and_the_final_status(page):
    record = page["api"]["records"]["retried"]
    for size, _ in sizes(page):
        shown = timeline(page, "retried", size)
        assert shown["id"] == record["id"] and shown["title"] == record["subject"]
        assert [e["type"] for e in shown["events"]] == [e["type"] for e in record["events"]]
        types = [e["type"] for e in shown["events"]]
        assert types[0] == "accepted" and "deferred" in types and types[-1] in ("sent", "delivered"), types
        deferred = next(e for e in shown["events"] if e["type"] == "deferred")
        assert deferred["title"] == "Attempt 1: not accepted this time; retried"
        assert deferred["retry"].startswith("Retried ") and deferred["retry"].endswith(" later."), deferred
        assert "relay_unreachable" in deferred["reply"] or "connect" in deferred["reply"].lower(), deferred
        sent = next(e for e in shown["events"] if e["type"] == "sent")
        assert sent["title"].startswith("Attempt 2") or sent["title"].startswith("Attempt 3"), sent
        assert sent["reply"].startswith("250 2.0.0 "), sent
        assert shown["final"].startswith("Final status: delivered"), shown["final"]


def test_a_refused_recipient_shows_the_relays_reply_code_enhanced_code_and_text(page):
    record = page["api"]["records"]["refused"]
    event = next(e for e in record["events"] if e["type"] == "failed")
    for size, _ in sizes(page):
        shown = timeline(page, "refused", size)
        failed = next(e for e in shown["events"] if e["type"] == "failed")
        assert failed["reply"] == f"550 5.1.1 {event['diagnostic']}", (failed, event)
        assert failed["title"] == "Attempt 1: failed"
        assert shown["final"].startswith("Final status: failed")
        partly = timeline(page, "partly", size)
        assert partly["facts"]["Not sent to"].startswith(f"reject-{TAG}-2@example.org 550 5.1.1 "), partly


def test_a_failed_message_shows_its_retries_and_the_dead_letter_queue(page):
    record = page["api"]["records"]["failed"]
    assert record["attempts"] == 3 and record["dead_lettered"] is True, record
    for size, _ in sizes(page):
        shown = timeline(page, "failed", size)
        attempts = [e for e in shown["events"] if e["type"] in ("deferred", "failed")]
        assert [e["type"] for e in attempts] == ["deferred", "deferred", "failed"], attempts
        assert all(e["reply"].startswith("450 4.") for e in attempts), attempts
        assert all(e["retry"].startswith("Retried ") for e in attempts[:2]), attempts
        assert shown["final"].startswith("Final status: failed") and "dead-letter queue" in shown["final"]


def test_reports_and_webhook_deliveries_appear_beside_their_events(page):
    for size, _ in sizes(page):
        delivered = timeline(page, "delivered", size)
        report = next(e for e in delivered["events"] if e["type"] == "delivered")
        assert report["title"] == f"Report: delivered to ok-{TAG}@example.org", report
        sent = next(e for e in delivered["events"] if e["type"] == "sent")
        assert sent["webhooks"] and sent["webhooks"][0][0] == "delivered", sent
        assert sent["webhooks"][0][1].startswith("Webhook email.sent: delivered "), sent
        assert report["webhooks"][0][1].startswith("Webhook email.delivered: delivered "), report
        bounced = timeline(page, "bounced", size)
        report = next(e for e in bounced["events"] if e["type"] == "bounced")
        assert report["title"] == f"Report: bounce-{TAG}@example.org's server refused it"
        assert report["reply"].startswith("5.1.1"), report
        assert report["webhooks"][0][1].startswith("Webhook email.bounced: delivered "), report


def test_the_copy_link_copies_the_messages_id(page):
    copied = page["sizes"]["desktop"]["copied"]
    assert copied == {"said": "Copied.", "clipboard": page["args"]["ids"]["partly"]}, copied


# ---- suppressions ---------------------------------------------------------------------

def test_suppressions_list_why_and_a_removal_is_confirmed_first(page, workers):
    worker, _ = workers
    seen = page["sizes"]["desktop"]
    rows = {r["address"]: r["why"] for r in seen["suppressions"]["rows"]}
    assert rows[f"bounce-{TAG}@example.org"].startswith("Hard bounce"), rows
    assert rows[f"manual-{TAG}@example.org"] == "Added by handasked to be left out", rows
    assert "Remove this address from the list?" in seen["dialog"]["text"]
    assert f"manual-{TAG}@example.org" in seen["dialog"]["text"]
    assert seen["dialog"]["focused"] == "confirm-keep", "the safe choice has the focus"
    assert f"manual-{TAG}@example.org" in seen["kept"], "Keep it keeps it"
    assert seen["removed"]["state"] == f"Removed manual-{TAG}@example.org: sends go to it again."
    assert f"manual-{TAG}@example.org" not in seen["removed"]["rows"]
    assert f"bounce-{TAG}@example.org" in seen["removed"]["rows"]
    status, _ = api(worker, "GET", "/v1/suppressions/" + urllib.parse.quote(f"manual-{TAG}@example.org", safe=""))
    assert status == 404


# ---- keys, states, privacy ------------------------------------------------------------

def test_a_wrong_key_is_told_and_forgotten(page):
    for size, seen in sizes(page):
        refused = seen["unauthorized"]
        assert refused["notice"].startswith("That key was refused (401 unauthorized)"), refused
        assert refused["keyVisible"] and refused["storage"]["session"] == [], refused


def test_a_deployment_without_a_ledger_is_told_so(page):
    told = page["noLedger"]
    for view in ("glance", "messages"):
        assert told[view]["problem"] == "misconfigured", told
        assert told[view]["text"].startswith("This deployment has no delivery ledger (no DELIVERY_LEDGER binding)")
    assert told["suppressions"]["problem"] is None, "its suppression list is bound"


def test_no_key_address_or_content_is_put_in_a_url_or_in_local_storage(page):
    secrets = [page["args"]["key"], page["args"]["wrongKey"], TAG]
    for size, seen in sizes(page):
        assert seen["storage"]["local"] == 0 and seen["storage"]["session"] == ["edge-mailer-api-key"]
        for url in seen["urls"]:
            assert not any(s in url for s in secrets) and "%40" not in url and "@" not in url, url
        assert any(u.endswith("/v1/messages/search") for u in seen["urls"])


def test_axe_finds_no_serious_or_critical_violation_on_any_view(page, empty):
    for result in (empty, page):
        for size, seen in sizes(result):
            for view, violations in seen["axe"].items():
                bad = [v for v in violations if v["impact"] in ("serious", "critical")]
                assert bad == [], f"{result['phase']} {size} {view}: {bad}"
    assert set(page["sizes"]["desktop"]["axe"]) == {"key", "glance", "messages", "message", "suppressions", "dialog"}


def test_the_keyboard_alone_reaches_every_control(page, empty):
    for result in (empty, page):
        for size, seen in sizes(result):
            for view, unreached in seen["unreached"].items():
                assert unreached == [], f"{result['phase']} {size} {view}: never reached {unreached}"
    assert page["sizes"]["desktop"]["messages"]["focused"] == "messages-title", "the view's heading took the focus"


def test_it_fits_a_phone_has_no_script_error_and_keeps_screenshots(page):
    for size, seen in sizes(page):
        assert seen["errors"] == [], (size, seen["errors"])
        for view, extra in seen["overflow"].items():
            assert extra <= 0, (size, view, extra)
        for view in ("key", "unauthorized", "glance", "messages", "message-retried", "suppressions"):
            assert (SCREENSHOTS / f"dashboard-{view}-{size}.png").stat().st_size > 10_000, (view, size)
    assert (SCREENSHOTS / "dashboard-confirm-desktop.png").stat().st_size > 10_000
    assert (SCREENSHOTS / "dashboard-no-ledger-desktop.png").stat().st_size > 10_000
