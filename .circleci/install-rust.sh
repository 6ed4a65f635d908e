#!/usr/bin/env bash
# Rust on CircleCI's machine image: rustup with the toolchain berth is tested with (it needs
# 1.94.1 or newer), clippy and rustfmt.
set -euo pipefail
toolchain="${RUST_TOOLCHAIN:-1.95.0}"
if ! command -v rustup >/dev/null 2>&1; then
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
    sh -s -- -y --profile minimal --default-toolchain "$toolchain" -c clippy,rustfmt
  # shellcheck disable=SC2016 # expanded by the later steps' shells
  echo 'export PATH="$HOME/.cargo/bin:$PATH"' >>"${BASH_ENV:-/dev/null}"
else
  rustup toolchain install "$toolchain" --profile minimal -c clippy,rustfmt
  rustup default "$toolchain"
fi
