"""scripts/dev's own logic: the developer's dev.vars.local merged over the generated settings,
taken ports named with their variable, one scripts/dev per checkout, build/ reused when nothing
changed, and a dev log without wrangler's update check, its Request.cf warning or 4xx bodies."""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import devstack  # noqa: E402

CREDS = {"relay_user": "dev", "relay_password": "pw", "api_key": "key"}


def parse_vars(text: str) -> dict:
    return {line.split("=", 1)[0]: line.split("=", 1)[1].strip("'") for line in text.splitlines()
            if line and not line.startswith("#")}


def test_local_settings_replace_generated_ones_and_add_forms(tmp_path):
    local = tmp_path / "dev.vars.local"
    local.write_text("# mine\nSMTP_PORT=2590\n\nLOG_REQUESTS=\"all\"\n"
                     "FORMS='{\"contact\": {\"to\": \"me@example.com\"}, \"demo\": {\"to\": \"other@example.com\"}}'\n")
    merged = parse_vars(devstack.worker_vars(CREDS, 2587, {"DEMO_INBOX_URL": "http://x"},
                                             devstack.read_local_vars(local)))
    assert (merged["SMTP_PORT"], merged["LOG_REQUESTS"], merged["API_KEYS"]) == ("2590", "all", "key")
    forms = json.loads(merged["FORMS"])
    assert forms["contact"] == {"to": "me@example.com"}
    assert forms["demo"] == {"to": "other@example.com"}, "a local form replaces the generated one of its name"
    assert "demo-refused" in forms, "the other demo forms stay"


@pytest.mark.parametrize("text, why", [
    ("SMTP_PORT 2590\n", "line 1: expected KEY=value"),
    ("FORMS='{\"contact\": '\n", "FORMS is not JSON"),
    ("FORMS='[1]'\n", "FORMS must be a JSON object"),
])
def test_a_broken_local_file_is_named_with_its_line(tmp_path, text, why):
    local = tmp_path / "dev.vars.local"
    local.write_text(text)
    with pytest.raises(ValueError, match=why):
        devstack.read_local_vars(local)


def test_a_taken_port_is_named_with_the_variable_that_moves_it():
    ports = [devstack.free_port() for _ in range(6)]
    http, inbox, relay = ports[0], ports[1], devstack.local_relay.Ports(*ports[2:])
    assert devstack.taken_ports_message(http, inbox, relay) is None
    for taken, variable in ((http, "set PORT"), (inbox, "set INBOX_PORT"), (relay.untrusted, "set RELAY_PORT")):
        with socket.socket() as holder:
            holder.bind(("127.0.0.1", taken))
            holder.listen()
            message = devstack.taken_ports_message(http, inbox, relay)
        assert message and str(taken) in message and variable in message, message


def test_a_second_scripts_dev_in_one_checkout_is_told_which_runs(tmp_path):
    held = devstack.hold_dev_lock(tmp_path)
    try:
        with pytest.raises(SystemExit, match=r"already runs in this checkout \(pid \d+\)"):
            devstack.hold_dev_lock(tmp_path)
    finally:
        held.close()
    devstack.hold_dev_lock(tmp_path).close()  # free again once the first lets go


def fake_build_tree(root: Path) -> Path:
    """A copy of scripts/build-worker in a tree of its own, with a worker-build that only says it
    ran: what the script decides, without a real build."""
    (root / "scripts").mkdir(parents=True)
    shutil.copy(devstack.ROOT / "scripts" / "build-worker", root / "scripts" / "build-worker")
    (root / "scripts" / "shorten-imports").write_text("print('SHORTENED')\n")  # the fake wasm has no imports
    (root / "src").mkdir()
    (root / "src" / "lib.rs").write_text("// the Worker\n")
    (root / "Cargo.toml").write_text("[package]\n")
    (root / "Cargo.lock").write_text("")
    tools = root / "tools"
    tools.mkdir()
    (tools / "worker-build").write_text("#!/bin/sh\nmkdir -p build/worker && echo shim > build/worker/shim.mjs"
                                        " && echo wasm > build/index_bg.wasm && echo FAKE-WORKER-BUILD-RAN\n")
    (tools / "wasm-opt").write_text("#!/bin/sh\necho OPTIMIZED\n")
    for tool in tools.iterdir():
        tool.chmod(0o755)
    return tools


def test_build_worker_reuses_build_only_when_nothing_changed_and_of_the_same_kind(tmp_path):
    tools = fake_build_tree(tmp_path)

    def build(**env):
        run = subprocess.run(["bash", str(tmp_path / "scripts" / "build-worker")], capture_output=True, text=True,
                             env={"PATH": f"{tools}:/usr/bin:/bin", "HOME": str(tmp_path),
                                  "WASM_OPT_BIN": str(tools / "wasm-opt"), **env}, check=True)
        return "built" if "FAKE-WORKER-BUILD-RAN" in run.stdout else "reused" if "using the existing build/" in run.stdout else run.stdout

    assert build(EDGE_MAILER_PREBUILT="1") == "built", "nothing built yet"
    assert build(EDGE_MAILER_PREBUILT="1") == "reused"
    assert build() == "built", "without EDGE_MAILER_PREBUILT (scripts/test, a deploy) it always builds"
    stamp = tmp_path / "build" / ".edge-mailer-build"
    assert stamp.read_text() == "keep_names=0\n"
    assert build(EDGE_MAILER_PREBUILT="1", EDGE_MAILER_KEEP_NAMES="1") == "built", "another kind of build"
    assert build(EDGE_MAILER_PREBUILT="1") == "built", "and back"
    for changed in ("src/lib.rs", "Cargo.lock", "scripts/build-worker"):
        time.sleep(0.05)  # past the stamp's clock tick
        os.utime(tmp_path / changed)  # saved now, after that build
        assert build(EDGE_MAILER_PREBUILT="1") == "built", f"{changed} changed"
        assert build(EDGE_MAILER_PREBUILT="1") == "reused"


class FakeRegistry:
    """An npm registry on loopback that says a far newer wrangler exists, and counts asks."""

    def __init__(self):
        self.asked = []
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                registry.asked.append(self.path)
                body = json.dumps({"dist-tags": {"latest": "99.0.0"}}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def test_wrangler_runs_without_asking_for_a_newer_version(tmp_path):
    """wrangler's banner asks the npm registry whether a newer wrangler exists (and ignores
    NO_UPDATE_NOTIFIER); the pinned 4.86 would print "update available" at every start. The
    registry is a fake on loopback here (`npm_registry`, read by wrangler's registry-url); the
    answer's cache (`$TMPDIR/update-check/`) is the test's own."""
    registry = FakeRegistry()
    wrangler = str(devstack.ROOT / "node_modules" / ".bin" / "wrangler")

    def run(env, cached: bool):
        tmp = Path(tempfile.mkdtemp(dir=tmp_path))
        if cached:  # a newer version known from an earlier start: the notice needs no wait
            (tmp / "update-check").mkdir()
            (tmp / "update-check" / "wrangler-latest.json").write_text(
                json.dumps({"latest": "99.0.0", "lastUpdate": int(time.time() * 1000)}))
        env = {**env, "npm_registry": registry.url, "TMPDIR": str(tmp)}
        return subprocess.run([wrangler, "telemetry", "status"], cwd=devstack.ROOT, env=env, capture_output=True,
                              text=True, timeout=60).stdout

    loud_env = {k: v for k, v in devstack.build_env().items() if k != "WRANGLER_HIDE_BANNER"}
    try:
        for cached in (False, True):
            quiet = run(devstack.build_env(), cached)
            assert "update available" not in quiet, quiet
        assert registry.asked == []
        # The same without the banner switch: the registry is asked and a known newer version
        # shows, so the checks above are real ones.
        run(loud_env, cached=False)
        assert registry.asked
        loud = run(loud_env, cached=True)
        assert "update available 99.0.0" in loud, loud
    finally:
        registry.stop()


def test_the_dev_log_is_quiet(stack):
    """No wrangler banner, no Request.cf fetch (and its stack trace), no HTML body echoed for a
    4xx answer: one line from the Worker and one from wrangler per request."""
    body = urllib.parse.urlencode({"name": "", "message": " "}).encode()
    request = urllib.request.Request(stack.base_url + "/v1/forms/plain", data=body, method="POST")
    try:
        urllib.request.urlopen(request, timeout=30)
        raise AssertionError("an empty submission was accepted")
    except urllib.error.HTTPError as refused:
        assert refused.code == 422 and b"<html" in refused.read().lower()
    deadline = time.monotonic() + 10
    while "POST /v1/forms/plain 422" not in (log := stack.log_path.read_text(errors="replace")):
        assert time.monotonic() < deadline, f"wrangler logged no line for the 422:\n{log[-2000:]}"
        time.sleep(0.2)
    assert "Request.cf" not in log and "workers.cloudflare.com" not in log
    assert "wrangler 4." not in log and "update available" not in log
    assert "<html" not in log.lower() and "<!doctype" not in log.lower()


def test_the_relay_is_checked_without_writing_to_its_log(stack, tmp_path):
    maillog = stack.relay_dir / "maillog"
    before = maillog.read_bytes()
    assert all(devstack.local_relay.running(stack.relay_dir) for _ in range(3))
    assert maillog.read_bytes() == before, "`postfix status` logs a line each time; scripts/dev asks every second"
    assert not devstack.local_relay.running(tmp_path)


def test_a_value_with_an_apostrophe_is_written_in_backticks_and_one_dotenv_cannot_keep_is_refused(tmp_path):
    assert devstack.dotenv_quoted("A", '{"to": "x"}') == "'{\"to\": \"x\"}'"
    assert devstack.dotenv_quoted("A", "We'll reply") == "`We'll reply`"
    for value in ("it's `x`", "a\rb", "a\nb", "C:\\"):
        with pytest.raises(ValueError, match="A cannot be written"):
            devstack.dotenv_quoted("A", value)
    local = tmp_path / "dev.vars.local"
    local.write_text("SUBJECT=`We'll reply`\n")  # a line copied from .dev.vars reads the same
    assert devstack.read_local_vars(local) == {"SUBJECT": "We'll reply"}


SERVE = """import json, sys
sys.path.insert(0, sys.argv[1])
import devstack
from pathlib import Path
state = Path(sys.argv[2])
devstack.serve(devstack.Stack(state, devstack.free_relay_ports(), devstack.free_port(), vars_file=state / "dev.vars"),
               0, json.loads(sys.argv[3]))
"""


class DevProcess:
    """scripts/dev's own run (devstack.serve: build, relay, wrangler, banner, watch) in a process
    of its own, on free ports and a state directory of the test's, its output read as it comes."""

    def __init__(self, state: Path, local: dict):
        self.state = state
        self.process = subprocess.Popen([sys.executable, "-c", SERVE, str(devstack.ROOT / "scripts"), str(state),
                                         json.dumps(local)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, start_new_session=True)
        self.lines = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(iter(self.process.stdout.readline, "")),
                                       daemon=True)
        self.reader.start()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            assert self.process.poll() is None or text in self.output, f"exited before {text!r}:\n{self.output}"
            assert time.monotonic() < deadline, f"no {text!r} in {timeout}s:\n{self.output}"
            time.sleep(0.1)

    def banner_value(self, label: str) -> str:
        banner = self.lines[self.lines.index("ready.\n"):]
        line = next(line for line in banner if line.strip().startswith(label))
        return line.split(label, 1)[1].split()[0]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait(timeout=10)


def wrangler_pids(port: str) -> list:
    found = subprocess.run(["pgrep", "-f", f"wrangler dev .*--port {port} "], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


@pytest.mark.parametrize("stopping", ["relay", "wrangler"])
def test_scripts_dev_says_ready_when_a_send_works_and_which_part_stopped(stopping):
    """The banner comes once a send works (after wrangler's watcher reload, not at its first
    answer); a setting with an apostrophe reaches the Worker; when the relay or wrangler stops,
    scripts/dev says which, stops the other and exits 1."""
    state = Path(tempfile.mkdtemp(prefix="edge-mailer-dev-"))
    state.chmod(0o755)  # Postfix reads the relay's directory as another user
    local = {"FORMS": json.dumps({"contact": {"to": "me@example.com", "subject": "We'll reply, {{name}}",
                                              "delivery": "sync"}})}
    dev = DevProcess(state, local)
    try:
        dev.wait_for("\nready.\n", timeout=240)
        before_banner = dev.output[:dev.output.index("\nready.\n")]
        assert "building the Worker" in before_banner
        assert "[custom build]" in before_banner and devstack.build_reloaded(before_banner), \
            "the banner came before wrangler's watcher rebuild was loaded"
        base = dev.banner_value("worker:").rstrip("/")
        inbox = Path(dev.banner_value("mail:"))
        if stopping == "relay":
            # Right after the banner, as the README does: no 503 from a reload still to come.
            request = urllib.request.Request(f"{base}/v1/forms/contact", data=b"name=Ada&message=Hi",
                                             headers={"accept": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as answer:
                assert answer.status == 200 and json.load(answer)["ok"] is True
            deadline = time.monotonic() + 20
            while not any("Subject: We'll reply, Ada" in path.read_text(errors="replace")
                          for path in inbox.glob("*")):
                assert time.monotonic() < deadline, "the form's message did not arrive"
                time.sleep(0.2)
            devstack.local_relay.stop(state / "relay")
            said = "the relay (Postfix) stopped"
        else:
            port = base.rsplit(":", 1)[1]
            pids = wrangler_pids(port)
            assert pids, "no wrangler process found for the Worker's port"
            for pid in pids:
                os.kill(pid, 9)
            said = "wrangler dev exited"
        assert dev.process.wait(timeout=30) == 1
        dev.reader.join(timeout=5)
        assert f"scripts/dev: {said}" in dev.output, dev.output
        assert not devstack.local_relay.running(state / "relay"), "the relay is stopped too"
        with pytest.raises(ConnectionRefusedError):  # nothing listens there any more
            socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])), timeout=2).close()
    finally:
        try:
            dev.stop()
        finally:
            devstack.local_relay.stop(state / "relay")
            shutil.rmtree(state, ignore_errors=True)


SHORTEN = devstack.ROOT / "scripts" / "shorten-imports"
TWO_IMPORTS = """(module
  (import "./glue.js" "__wbg_add_0123456789abcdef" (func $add (param i32 i32) (result i32)))
  (import "./glue.js" "__wbg_twice_fedcba9876543210" (func $twice (param i32) (result i32)))
  (func (export "run") (param i32) (result i32) (call $twice (call $add (local.get 0) (i32.const 1)))))"""
GLUE = ('export const imports = {"./glue.js": {__wbg_add_0123456789abcdef:function(a,b){return a+b},'
        '__wbg_twice_fedcba9876543210:function(a){return 2*a}}};\n')


def test_imports_get_short_names_in_the_module_and_the_glue_and_still_link(tmp_path):
    """The renamed module instantiates with the renamed glue and computes what it did; a name
    the glue holds other than once as a key stops the build and leaves both files as they were."""
    wat, wasm, glue = tmp_path / "m.wat", tmp_path / "m.wasm", tmp_path / "glue.mjs"
    wat.write_text(TWO_IMPORTS)
    subprocess.run([str(devstack.ROOT / "node_modules" / ".bin" / "wasm-as"), str(wat), "-o", str(wasm)], check=True)
    glue.write_text(GLUE)
    before = wasm.stat().st_size
    run = subprocess.run([sys.executable, str(SHORTEN), str(wasm), str(glue)], capture_output=True, text=True)
    assert run.returncode == 0 and "2 imports renamed" in run.stdout, run.stderr
    assert "__wbg_" not in glue.read_text() and b"__wbg_" not in wasm.read_bytes()
    names = ("__wbg_add_0123456789abcdef", "__wbg_twice_fedcba9876543210")
    assert wasm.stat().st_size == before - sum(len(name) - 1 for name in names), "only the names changed"
    check = (f"import {{readFileSync}} from 'node:fs'; import {{imports}} from {json.dumps(str(glue))};"
             f"const m = await WebAssembly.instantiate(readFileSync({json.dumps(str(wasm))}), imports);"
             f"console.log(m.instance.exports.run(20));")
    out = subprocess.run(["node", "--input-type=module", "-e", check], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "42"

    wasm.unlink()
    subprocess.run([str(devstack.ROOT / "node_modules" / ".bin" / "wasm-as"), str(wat), "-o", str(wasm)], check=True)
    glue.write_text(GLUE + "globalThis.__wbg_twice_fedcba9876543210 = 1;\n")
    original = (wasm.read_bytes(), glue.read_text())
    run = subprocess.run([sys.executable, str(SHORTEN), str(wasm), str(glue)], capture_output=True, text=True)
    assert run.returncode != 0 and "__wbg_twice_fedcba9876543210 appears 2 times" in run.stderr, run.stderr
    assert (wasm.read_bytes(), glue.read_text()) == original
