#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine as well as on a
# developer's: the real servers and system tools the integration tests
# start or call are installed when missing (as root on Debian), or named
# and the run stops; then every test binary runs (one failing binary does
# not hide the others), and the run ends with the tests that were skipped
# and why. Exit status: non-zero on any failure or missing package.
#
#   contrib/test.sh                  every target (the README's command)
#   contrib/test.sh --test mysql     one file's tests (tests/mysql.rs), or
#                                    what other cargo test arguments select
set -euo pipefail
cd "$(dirname "$0")/.."

# What the tests start or call, and the Debian package of each:
#   ss (iproute2), prlimit/setpriv/unshare (util-linux), systemd-analyze
#   (systemd), mariadbd + mariadb-install-db (mariadb-server), mariadb
#   (mariadb-client), promtool (prometheus), etcd (etcd-server),
#   etcdctl (etcd-client), dnsmasq (dnsmasq-base), redis-server
#   (redis-server), haproxy (haproxy), nginx with its stream module (nginx,
#   libnginx-mod-stream); for tests/haproxy_socket also
#   prometheus-haproxy-exporter, hatop, socat, tmux (hatop is curses),
#   python3 -m venv (python3-venv).
need=()
command -v ss >/dev/null || need+=(iproute2)
command -v prlimit >/dev/null || need+=(util-linux)
command -v systemd-analyze >/dev/null || need+=(systemd)
[ -x /usr/sbin/mariadbd ] || need+=(mariadb-server)
command -v mariadb >/dev/null || need+=(mariadb-client)
command -v promtool >/dev/null || need+=(prometheus)
[ -x /usr/bin/etcd ] || need+=(etcd-server)
command -v etcdctl >/dev/null || need+=(etcd-client)
[ -x /usr/sbin/dnsmasq ] || need+=(dnsmasq-base)
command -v redis-server >/dev/null || need+=(redis-server)
[ -x /usr/sbin/haproxy ] || need+=(haproxy)
command -v prometheus-haproxy-exporter >/dev/null || need+=(prometheus-haproxy-exporter)
command -v hatop >/dev/null || need+=(hatop)
command -v socat >/dev/null || need+=(socat)
command -v tmux >/dev/null || need+=(tmux)
python3 -c 'import ensurepip' 2>/dev/null || need+=(python3-venv)
[ -x /usr/sbin/nginx ] || need+=(nginx)
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || need+=(libnginx-mod-stream)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "the tests need these Debian packages: ${need[*]}" >&2
    echo "install them (as root: apt-get install ${need[*]}) or run this script as root on Debian" >&2
    exit 1
  fi
  echo "installing: ${need[*]}" >&2
  apt-get update -qq
  # Packaged services must not start on install: the tests start their own
  # (the policy file is removed again if we put it there).
  policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    policy=/usr/sbin/policy-rc.d
  fi
  rc=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" || rc=$?
  [ -z "$policy" ] || rm -f "$policy"
  [ "$rc" -eq 0 ] || exit "$rc"
fi

# PyPI packages for tests/haproxy_socket (the HAProxy tools that are not
# in Debian: the haproxyadmin library and Ansible, whose full package
# bundles community.general.haproxy), in a virtualenv made once and kept.
venv="${BALANCE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/balance-venv}"
if [ ! -x "$venv/bin/ansible" ] || ! "$venv/bin/python" -c 'import haproxyadmin' 2>/dev/null; then
  echo "making the Python virtualenv $venv (haproxyadmin, ansible)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'haproxyadmin==0.2.4' 'ansible==12.3.0'
fi
export BALANCE_VENV="$venv"

# Each skipped test appends "test<TAB>reason" here (tests/common).
skips=$(mktemp "${TMPDIR:-/tmp}/balance-test-skips.XXXXXX")
trap 'rm -f "$skips"' EXIT
export BALANCE_TEST_SKIPS="$skips"

[ $# -gt 0 ] || set -- --all-targets
# The integration tests are one binary, `integration` (tests/main.rs), a
# module per file: `--test NAME` for a file tests/NAME.rs becomes that
# binary with the filter `NAME::` (and `--skip M::` for each module M whose
# name ends in _NAME, as fleet_ops ends in ops), so it runs that file's
# tests as it did when each file was a binary.
mods=$(sed -n 's/^mod \([a-z0-9_]*\);$/\1/p' tests/main.rs)
args=() filters=() rest=() one=
while [ $# -gt 0 ]; do
  case $1 in
    --) shift; rest=("$@"); break ;;
    --test | --test=*)
      if [ "$1" = --test ]; then name=${2-}; shift; else name=${1#--test=}; fi
      shift
      if [ "$name" != common ] && grep -qx -- "$name" <<<"$mods"; then
        [ -n "$one" ] || args+=(--test integration)
        one=1
        filters+=("$name::")
        for m in $mods; do
          case $m in *?_"$name") filters+=(--skip "$m::") ;; esac
        done
      else
        args+=(--test "$name")
      fi
      ;;
    *) args+=("$1"); shift ;;
  esac
done
if [ ${#rest[@]} -gt 0 ] || [ ${#filters[@]} -gt 0 ]; then
  args+=(-- "${rest[@]}" "${filters[@]}")
fi
status=0
cargo test --no-fail-fast "${args[@]}" || status=$?

echo
if [ -s "$skips" ]; then
  echo "SKIPPED $(wc -l < "$skips") test(s):"
  cut -f2 "$skips" | sort | uniq -c | sed 's/^ *\([0-9]*\) /  \1 skipped: /'
  echo "  (tests: $(cut -f1 "$skips" | tr '\n' ' '))"
else
  echo "no test skipped"
fi
if [ "$status" -ne 0 ]; then
  echo "FAILED: see the failures above (every test binary ran)" >&2
else
  echo "all tests passed"
fi
exit "$status"
