"""scripts/dev's own logic, without starting anything: the developer's dev.vars.local merged
over the generated settings."""

import json
import sys
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
