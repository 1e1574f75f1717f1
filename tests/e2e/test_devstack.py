"""scripts/dev's own logic: the developer's dev.vars.local merged over the generated settings,
taken ports named with their variable, one scripts/dev per checkout, build/ reused when nothing
changed, and a dev log without wrangler's update check, its Request.cf warning or 4xx bodies."""

import json
import os
import re
import shutil
import signal
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
    """A copy of scripts/build-worker in a tree of its own, with tools that only say they ran:
    what the script decides, without a real build. The tools are in a CARGO_HOME of their own
    (returned), outside HOME and off PATH, as in the official `rust` image."""
    (root / "scripts").mkdir(parents=True)
    for script in ("build-worker", "cargo-path.sh"):
        shutil.copy(devstack.ROOT / "scripts" / script, root / "scripts" / script)
    (root / "src").mkdir()
    (root / "src" / "lib.rs").write_text("// the Worker\n")
    (root / "Cargo.toml").write_text("[package]\n")
    (root / "Cargo.lock").write_text("")
    cargo_home = root / "cargo-home"
    tools = cargo_home / "bin"
    tools.mkdir(parents=True)
    # The build in one step, so that two at once would be seen: each fails if another is in it.
    (tools / "worker-build").write_text(
        "#!/bin/sh\n[ -e build/BUSY ] && { echo TWO-BUILDS-AT-ONCE; exit 1; }\ntouch build/BUSY\n"
        "sleep ${FAKE_BUILD_SECONDS:-0}\n"
        "mkdir -p build/worker && echo shim > build/worker/shim.mjs && echo wasm > build/index_bg.wasm\n"
        "echo FAKE-WORKER-BUILD-RAN with \"$WASM_BINDGEN_BIN\"\nrm build/BUSY\n")
    (tools / "wasm-bindgen").write_text("#!/bin/sh\necho wasm-bindgen 0.0.0\n")
    (root / "wasm-opt").write_text('#!/bin/sh\ncp "$1" "$3" && echo OPTIMIZED\n')
    for tool in (*tools.iterdir(), root / "wasm-opt"):
        tool.chmod(0o755)
    return cargo_home


def run_build(root: Path, cargo_home: Path, **env) -> subprocess.CompletedProcess:
    home = root / "home"  # no ~/.cargo in it: the tools are only where CARGO_HOME says
    home.mkdir(exist_ok=True)
    return subprocess.run(["bash", str(root / "scripts" / "build-worker")], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(home), "CARGO_HOME": str(cargo_home),
                               "WASM_OPT_BIN": str(root / "wasm-opt"), **env})


def build_outcome(root: Path, cargo_home: Path, **env) -> str:
    """What build-worker did: "built", "reused", or what it printed instead."""
    run = run_build(root, cargo_home, **env)
    assert run.returncode == 0, run.stdout + run.stderr
    return "built" if "FAKE-WORKER-BUILD-RAN" in run.stdout else "reused" if "using the existing build/" in run.stdout else run.stdout


def test_build_worker_reuses_build_only_when_nothing_changed_and_of_the_same_kind(tmp_path):
    cargo_home = fake_build_tree(tmp_path)

    def build(**env):
        return build_outcome(tmp_path, cargo_home, **env)

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


def test_the_workers_of_a_test_run_reuse_its_build_whatever_changed_since(tmp_path):
    """EDGE_MAILER_PREBUILT=pinned, as tests and benchmarks start their Workers: a file saved
    during the run does not rebuild build/ under the Workers already running."""
    cargo_home = fake_build_tree(tmp_path)

    def build(**env):
        return build_outcome(tmp_path, cargo_home, **env)

    assert build(EDGE_MAILER_PREBUILT="pinned") == "built", "nothing built yet"
    time.sleep(0.05)
    os.utime(tmp_path / "src" / "lib.rs")  # saved during the run
    assert build(EDGE_MAILER_PREBUILT="pinned") == "reused"
    assert build(EDGE_MAILER_PREBUILT="pinned", EDGE_MAILER_KEEP_NAMES="1") == "built", "another kind of build"
    assert build(EDGE_MAILER_PREBUILT="1") == "built", "scripts/dev's Workers build the change"


def test_build_worker_finds_its_tools_in_cargo_home_outside_the_home_directory(tmp_path):
    cargo_home = fake_build_tree(tmp_path)
    run = run_build(tmp_path, cargo_home)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"FAKE-WORKER-BUILD-RAN with {cargo_home}/bin/wasm-bindgen" in run.stdout
    # Nothing in CARGO_HOME and nothing on PATH: it says which tool and where it looked, and
    # does not fall back to ~/.cargo.
    empty = tmp_path / "empty-cargo-home"
    (empty / "bin").mkdir(parents=True)
    (tmp_path / "home" / ".cargo" / "bin").mkdir(parents=True)
    shutil.copy(cargo_home / "bin" / "worker-build", tmp_path / "home" / ".cargo" / "bin" / "worker-build")
    run = run_build(tmp_path, empty)
    assert run.returncode != 0 and "FAKE-WORKER-BUILD-RAN" not in run.stdout
    assert f"is not in {empty}/bin or on PATH" in run.stderr, run.stderr


def test_build_worker_finds_the_real_tools_through_cargo_home(tmp_path):
    """The installed wasm-bindgen and worker-build, linked into a CARGO_HOME in a temporary
    directory: the script runs the ones it finds there (worker-build is asked its version only)."""
    cargo_home = fake_build_tree(tmp_path)
    for tool in ("wasm-bindgen", "worker-build"):
        real = shutil.which(tool)  # scripts/test puts cargo's bin directory on PATH
        assert real, f"{tool} is not installed (scripts/setup.sh)"
        (cargo_home / "bin" / tool).unlink()
        (cargo_home / "bin" / tool).symlink_to(real)
    # The real worker-build answers its version and builds nothing; the script's own checks
    # (it found both tools) ran first.
    script = tmp_path / "scripts" / "build-worker"
    script.write_text(script.read_text().replace('"$worker_build" --release', '"$worker_build" --version; "$WASM_BINDGEN_BIN" --version; exit 0'))
    run = run_build(tmp_path, cargo_home)
    assert run.returncode == 0, run.stdout + run.stderr
    lock = (devstack.ROOT / "Cargo.lock").read_text()
    locked = {name: re.search(rf'name = "{name}"\nversion = "([^"]+)"', lock)[1] for name in ("worker", "wasm-bindgen")}
    # The pinned ones (scripts/setup.sh installs them), not whatever else might be on PATH.
    assert run.stdout.split() == [locked["worker"], "wasm-bindgen", locked["wasm-bindgen"]], run.stdout


def test_two_builds_started_at_once_take_turns(tmp_path):
    """Two `wrangler dev` started together each run the [build] step: the second waits for the
    first, then finds build/ fresh and reuses it."""
    cargo_home = fake_build_tree(tmp_path)
    with tempfile.TemporaryDirectory() as home:
        env = {"PATH": "/usr/bin:/bin", "HOME": home, "CARGO_HOME": str(cargo_home),
               "WASM_OPT_BIN": str(tmp_path / "wasm-opt"), "EDGE_MAILER_PREBUILT": "1", "FAKE_BUILD_SECONDS": "1"}
        script = str(tmp_path / "scripts" / "build-worker")
        both = [subprocess.Popen(["bash", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                for _ in range(2)]
        outputs = [process.communicate(timeout=60)[0] for process in both]
    assert all(process.returncode == 0 for process in both), outputs
    assert not any("TWO-BUILDS-AT-ONCE" in output for output in outputs), outputs
    assert sorted("built" if "FAKE-WORKER-BUILD-RAN" in o else "reused" for o in outputs) == ["built", "reused"], outputs


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


def test_wrangler_takes_a_lost_request_for_a_restart(stack):
    """What devstack.WRANGLER_DROPPED works around, shown on wrangler itself: when the hop from
    its ProxyWorker to the Worker's runtime fails (here the runtime is killed; in a test run,
    the 5 s keep-alive race), a POST is answered the 503 the tests send again, and a GET is
    held until another request comes in. If a new wrangler changes either, this fails: look
    again at the workaround."""
    worker = stack.start_workers({"runtime_lost": {}})["runtime_lost"]
    runtimes = [pid for pid, command in workerd_processes(worker) if b"entry=127.0.0.1:0 " in command]
    assert len(runtimes) == 1, "expected one runtime with a port of its choosing (the other is the ProxyWorker's)"
    os.kill(runtimes[0], signal.SIGKILL)
    post = urllib.request.Request(worker.base_url + "/v1/send", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(post, timeout=30)
    assert devstack.dropped_by_wrangler(refused.value.code, refused.value.read())
    with pytest.raises(TimeoutError):
        urllib.request.urlopen(worker.base_url + "/v1/errors", timeout=3)
    assert worker.wrangler.poll() is None, "wrangler dev exited"
    worker.stop_worker()


def workerd_processes(worker) -> list:
    """(pid, command line) of each workerd that this Worker's wrangler started."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if os.getpgid(int(proc.name)) == worker.wrangler.pid and (proc / "comm").read_text().strip() == "workerd":
                found.append((int(proc.name), (proc / "cmdline").read_bytes().replace(b"\0", b" ")))
        except (OSError, ValueError):
            continue
    return found


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
