#!/usr/bin/env bash
# Installs everything edge-mailer needs on a fresh machine, skipping what is already there.
#   scripts/setup.sh          what `scripts/dev` needs
#   scripts/setup.sh --test   also what `scripts/test` needs (pytest in .local/venv)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
# cargo's own bin directory first: where `cargo install` puts the tools.
source scripts/cargo-path.sh
step() { printf '==> %s\n' "$*"; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }

# --- Debian packages: Postfix and Cyrus SASL for the local relay, openssl for its test CA,
#     and for tests Chromium.
missing=()
[ -x /usr/sbin/postfix ] || missing+=(postfix)
[ -x /usr/sbin/saslpasswd2 ] || missing+=(sasl2-bin)
dpkg -s libsasl2-modules >/dev/null 2>&1 || missing+=(libsasl2-modules)
command -v openssl >/dev/null || missing+=(openssl)
# The browser tests drive Debian's Chromium (a browser download is impossible here).
[ "${1:-}" = "--test" ] && { [ -x /usr/bin/chromium ] || missing+=(chromium); }
if ((${#missing[@]})); then
  [ "$(id -u)" = 0 ] || die "need root to apt-get install ${missing[*]}"
  step "apt-get install ${missing[*]}"
  # "No configuration": the system instance stays off; we run private instances only.
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- Rust: the wasm target, and the build tools pinned to Cargo.lock.
locked_version() { awk -v name="$1" '$0 == "name = \"" name "\"" { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock; }
rustup target list --installed | grep -qx wasm32-unknown-unknown || { step "rustup target add wasm32-unknown-unknown"; rustup target add wasm32-unknown-unknown; }

want="$(locked_version wasm-bindgen)"
have="$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)"
if [ "$have" != "$want" ]; then
  step "cargo install wasm-bindgen-cli $want (matches Cargo.lock; takes a few minutes)"
  # Not --locked: its lockfile pins a webpki-roots release the registry no longer serves.
  cargo install -q wasm-bindgen-cli --version "$want"
fi

want="$(locked_version worker)"
have="$(worker-build --version 2>/dev/null | awk '{print $NF}' || true)"
if [ "$have" != "$want" ]; then
  step "cargo install worker-build $want (the release of the worker crate, whose shim it writes; takes a few minutes)"
  cargo install -q worker-build --version "$want" --locked
fi

# --- Node: wrangler 4.86 (the last release that runs on Node 20), esbuild, binaryen.
node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a==20&&b>=3)?0:1)' \
  || die "Node.js >= 20.3 is required (found $(node --version 2>/dev/null || echo none))"
stamp="node_modules/.edge-mailer-lock"
lock_sum="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_sum" ]; then
  step "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_sum" > "$stamp"
fi

# --- Test tools, only for the test command: cargo-fuzz and pytest.
if [ "${1:-}" = "--test" ]; then
  if [ "$(cargo fuzz --version 2>/dev/null | awk '{print $2}')" != "0.13.2" ]; then
    step "cargo install cargo-fuzz 0.13.2"
    cargo install -q cargo-fuzz --version 0.13.2 --locked
  fi
  venv=".local/venv"
  req_sum="$(sha256sum tests/e2e/requirements.txt | cut -d' ' -f1)"
  if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.edge-mailer-req" 2>/dev/null)" != "$req_sum" ]; then
    step "python venv with tests/e2e/requirements.txt"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r tests/e2e/requirements.txt
    echo "$req_sum" > "$venv/.edge-mailer-req"
  fi
fi
