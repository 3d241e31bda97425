#!/usr/bin/env bash
# Try balance on loopback: two tagged echo backends (A primary, B backup) and
# balance in the foreground on port 8080. Ctrl-C stops everything.
#   In another terminal:  exec 3<>/dev/tcp/127.0.0.1/8080; head -1 <&3
set -eu
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin balance --example backend
bin=target/release
"$bin/examples/backend" 127.0.0.1:9001 A & a=$!
"$bin/examples/backend" 127.0.0.1:9002 B & b=$!
trap 'kill $a $b 2>/dev/null' EXIT
echo "balance: 127.0.0.1:8080 -> A (127.0.0.1:9001), backup B (127.0.0.1:9002)"
echo "try:  exec 3<>/dev/tcp/127.0.0.1/8080; head -1 <&3     (prints A; kill A's pid $a and it prints B)"
"$bin/balance" -f -b 127.0.0.1 8080 127.0.0.1:9001 ! 127.0.0.1:9002
