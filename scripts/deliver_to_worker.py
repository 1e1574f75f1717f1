#!/usr/bin/env python3
"""Postfix's pipe(8) transport for the local bounce domains: hands one message (a delivery
report, on stdin) to the `email` handler of the Worker that owns the recipient's domain,
through `wrangler dev`'s `POST /cdn-cgi/handler/email?from=…&to=…`, as Email Routing hands
mail to a deployed Worker.

    deliver_to_worker.py WORKERS_FILE SENDER RECIPIENT < message

WORKERS_FILE has a line `<bounce domain> <Worker base URL>` per Worker (scripts/devstack.py
writes them as Workers start). Exit codes are sysexits(3), which Postfix reads: 0 delivered;
75 (EX_TEMPFAIL) when no Worker owns the domain yet, it cannot be reached, or it failed (the
handler fails on purpose when its ledger is unavailable), so Postfix tries again later; 65
(EX_DATAERR) when the Worker refused the message for good (wrangler's 400)."""

import sys
import urllib.error
import urllib.parse
import urllib.request

EX_DATAERR = 65
EX_TEMPFAIL = 75


def worker_for(workers_file: str, recipient: str) -> str | None:
    domain = recipient.rsplit("@", 1)[-1].lower()
    try:
        lines = open(workers_file, encoding="utf-8").read().splitlines()
    except OSError:
        return None
    for line in reversed(lines):  # the newest registration of a domain wins
        parts = line.split()
        if len(parts) == 2 and parts[0].lower() == domain:
            return parts[1]
    return None


def main() -> int:
    workers_file, sender, recipient = sys.argv[1:4]
    message = sys.stdin.buffer.read()
    base = worker_for(workers_file, recipient)
    if base is None:
        print(f"no Worker owns {recipient}'s domain yet", file=sys.stderr)
        return EX_TEMPFAIL
    query = urllib.parse.urlencode({"from": sender, "to": recipient})
    request = urllib.request.Request(f"{base}/cdn-cgi/handler/email?{query}", data=message, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
            return 0
    except urllib.error.HTTPError as error:
        print(f"the Worker answered {error.code}: {error.read()[:300]!r}", file=sys.stderr)
        return EX_DATAERR if 400 <= error.code < 500 else EX_TEMPFAIL
    except OSError as error:
        print(f"the Worker could not be reached: {error}", file=sys.stderr)
        return EX_TEMPFAIL


if __name__ == "__main__":
    sys.exit(main())
