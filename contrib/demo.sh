#!/usr/bin/env bash
# Try balance on loopback: two tagged echo backends (A primary, B backup) and
# balance in the foreground on port 8080. Ctrl-C stops everything.
#   In another terminal:  exec 3<>/dev/tcp/127.0.0.1/8080; head -1 <&3
set -eu
cd "$(dirname "$0")/.."
# The README's install step builds exactly this (same command, same
# profile, same target directory), so installing afterwards rebuilds
# nothing. Cargo shows its progress: the first build takes minutes.
cargo build --release
bin=target/release
# The demo backend uses only the standard library: rustc builds it in
# seconds, without `--example`, which would build the crate again with
# the dev-dependencies' features.
if [ ! "$bin/demo-backend" -nt examples/backend.rs ]; then
  echo "building the demo backend (examples/backend.rs)"
  "${RUSTC:-rustc}" --edition 2024 -O -o "$bin/demo-backend" examples/backend.rs
fi
"$bin/demo-backend" 127.0.0.1:9001 A & a=$!
"$bin/demo-backend" 127.0.0.1:9002 B & b=$!
trap 'kill $a $b 2>/dev/null' EXIT
echo "balance: 127.0.0.1:8080 -> A (127.0.0.1:9001), backup B (127.0.0.1:9002)"
echo "try:  exec 3<>/dev/tcp/127.0.0.1/8080; head -1 <&3     (prints A; kill A's pid $a and it prints B)"
"$bin/balance" -f -b 127.0.0.1 8080 127.0.0.1:9001 ! 127.0.0.1:9002
