#!/bin/sh
# mysqlchk.sh: a MySQL/MariaDB health check for balance, two ways.
#
# 1. As an exec check (no shell is involved; %H and %P become $1 and $2):
#
#      balance 3306 db101:3306 ! db201:3306 \
#        -m 'command=/usr/local/bin/mysqlchk.sh %H %P:timeout=3:interval=2'
#
# 2. As a side-port HTTP check service on each database host (the
#    mysqlchk/31337 pattern from HAProxy setups), e.g. with socat:
#
#      socat TCP-LISTEN:31337,reuseaddr,fork \
#        EXEC:'/usr/local/bin/mysqlchk.sh --http 127.0.0.1 3306'
#
#    and on the balancer:
#
#      balance 3306 db101:3306 ! db201:3306 \
#        -m 'http=/mysqlchk/:port=31337:body=is running:interval=2'
#
# The check logs in as CHK_USER (default "chk", a user without password and
# without privileges: CREATE USER 'chk'@'<balancer ip>';) and runs SELECT 1,
# so the server counts no aborted connection. balance runs exec checks with
# a cleared environment and PATH=/usr/sbin:/usr/bin:/sbin:/bin.
set -u

http=0
if [ "${1:-}" = "--http" ]; then
    http=1
    shift
fi
host=${1:-127.0.0.1}
port=${2:-3306}
user=${CHK_USER:-chk}

client=$(command -v mariadb || command -v mysql) || client=""
ok=1
if [ -n "$client" ] &&
   "$client" --no-defaults --connect-timeout=2 -h "$host" -P "$port" \
       -u "$user" -N -e 'SELECT 1' >/dev/null 2>&1; then
    ok=0
fi

if [ "$http" = 1 ]; then
    # Read (and ignore) the request line and headers, bounded.
    n=0
    while [ "$n" -lt 100 ] && IFS= read -r line; do
        n=$((n + 1))
        case "$line" in "" | "$(printf '\r')") break ;; esac
    done
    if [ "$ok" = 0 ]; then
        status="200 OK"; body="MySQL is running."
    else
        status="503 Service Unavailable"; body="MySQL is down."
    fi
    printf 'HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s' \
        "$status" "${#body}" "$body"
fi
exit "$ok"
