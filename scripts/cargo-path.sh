# Sourced by the scripts that run tools `cargo install` put in place: cargo's own bin directory
# goes first on PATH. That is $CARGO_HOME/bin (the official rust image sets CARGO_HOME), or,
# with CARGO_HOME unset, the directory of the cargo on PATH (rustup's, in that same bin).
if [ -n "${CARGO_HOME:-}" ]; then
  cargo_bin="$CARGO_HOME/bin"
elif command -v cargo >/dev/null; then
  cargo_bin="$(dirname "$(command -v cargo)")"
else
  cargo_bin="(no CARGO_HOME, no cargo on PATH)"
fi
[ -d "$cargo_bin" ] && export PATH="$cargo_bin:$PATH"
true
