#!/bin/bash
# The by-hand MySQL failover run of docs/mysql.md: two MariaDB servers on loopback
# (M2 a GTID replica of M1) behind balance, sysbench plus a small
# reconnecting client writing and reading through balance, M2's SQL thread
# stopped so it receives without applying, M1 killed (-9) mid-run, M2's SQL
# thread started again a few seconds later.
#
#   contrib/mysql-failover-demo.sh gate     # -m mysql:...:max_lag=30s (the catch-up gate)
#   contrib/mysql-failover-demo.sh nogate   # -m mysql:... without max_lag=
#
# Needs mariadbd, mariadb-install-db and the mariadb client (Debian's
# mariadb-server), sysbench, and balance in PATH (or BALANCE=/path).
# Everything it starts listens on 127.0.0.1 and lives under one temp dir;
# every process is stopped by pid and the dir removed at exit (KEEP=1 keeps
# the dir: logs, data). Takes about 30 s.
set -u
mode=${1:-gate}
case $mode in gate | nogate) ;; *) echo "usage: $0 gate|nogate" >&2; exit 2 ;; esac
BALANCE=${BALANCE:-balance}
DUR=${DUR:-20}                 # seconds of load
STOP_SQL_AT=${STOP_SQL_AT:-5}  # M2 stops applying (keeps receiving)
KILL_AT=${KILL_AT:-8}          # kill -9 M1
APPLY_AFTER=${APPLY_AFTER:-3}  # M2 applies again this long after the kill

dir=$(mktemp -d /tmp/mysql-failover-demo.XXXXXX)
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do pkill -P "$p" 2>/dev/null; kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $dir"; else rm -rf "$dir"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

forget() { # a reaped pid
    local p keep=()
    for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    pids=("${keep[@]}")
}
die() { echo "$*" >&2; exit 1; }
now() { echo "$EPOCHREALTIME"; }
free_port() {
    local p
    for _ in $(seq 50); do
        p=$((20000 + RANDOM % 12000)) # below the usual ephemeral range
        ss -Htan "sport = :$p" 2>/dev/null | grep -q . && continue
        (echo >"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
    die "no free port"
}
root=()
[ "$(id -u)" = 0 ] && root=(--user=root)
sql() { mariadb --no-defaults --socket="$dir/s$1.sock" -uroot -N -B -e "$2"; }
slave() { # one SHOW SLAVE STATUS field of M2
    mariadb --no-defaults --socket="$dir/s2.sock" -uroot -e 'SHOW SLAVE STATUS\G' |
        awk -v f="$1:" '$1 == f { sub(/^ *[A-Za-z_]+: ?/, ""); print; exit }'
}

# --- two servers -----------------------------------------------------------
mariadb-install-db --no-defaults --datadir="$dir/template" --skip-test-db \
    --auth-root-authentication-method=normal "${root[@]}" >"$dir/install.log" 2>&1 ||
    die "mariadb-install-db failed: see $dir/install.log"
declare -A port pid
start_server() { # id
    local n=$1
    cp -a "$dir/template" "$dir/d$n"
    port[$n]=$(free_port)
    mariadbd --no-defaults --datadir="$dir/d$n" --socket="$dir/s$n.sock" \
        --pid-file="$dir/d$n.pid" --log-error="$dir/d$n.err" --port="${port[$n]}" \
        --bind-address=127.0.0.1 --skip-name-resolve --server-id="$n" \
        --log-bin=mb --log-slave-updates --innodb-buffer-pool-size=64M \
        --innodb-flush-log-at-trx-commit=2 "${root[@]}" </dev/null >/dev/null 2>&1 &
    pid[$n]=$!
    pids+=("$!")
    for _ in $(seq 300); do sql "$n" 'SELECT 1' >/dev/null 2>&1 && return; sleep 0.1; done
    die "mariadbd $n did not start: $(tail -5 "$dir/d$n.err")"
}
start_server 1
start_server 2
sql 1 "CREATE USER repl@'127.0.0.1' IDENTIFIED BY 'replpw';
       GRANT REPLICATION SLAVE ON *.* TO repl@'127.0.0.1'"
sql 2 "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=${port[1]},
       MASTER_USER='repl', MASTER_PASSWORD='replpw', MASTER_CONNECT_RETRY=1,
       MASTER_USE_GTID=slave_pos; START SLAVE"
# Created on M1 after replication started: M2 gets them through it.
sql 1 "CREATE USER chk@'127.0.0.1' IDENTIFIED BY 'chkpw';
       GRANT REPLICA MONITOR ON *.* TO chk@'127.0.0.1';
       CREATE USER app@'127.0.0.1' IDENTIFIED BY 'apppw';
       CREATE DATABASE sbtest; CREATE DATABASE demo;
       GRANT ALL ON sbtest.* TO app@'127.0.0.1'; GRANT ALL ON demo.* TO app@'127.0.0.1';
       CREATE TABLE demo.counter (n INT PRIMARY KEY)"
sysbench oltp_read_write --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="${port[1]}" \
    --mysql-user=app --mysql-password=apppw --tables=1 --table-size=10000 \
    prepare >"$dir/prepare.log" 2>&1 || die "sysbench prepare failed: see $dir/prepare.log"
pos=$(sql 1 'SELECT @@gtid_binlog_pos')
[ "$(sql 2 "SELECT MASTER_GTID_WAIT('$pos', 30)")" = 0 ] || die "M2 did not catch up"

# --- balance -----------------------------------------------------------------
umask 077
printf 'chkpw\n' >"$dir/chk.pw"
umask 022
bport=$(free_port)
check="mysql:user=chk:password_file=$dir/chk.pw:interval=200ms:rise=2:fall=2"
[ "$mode" = gate ] && check+=":max_lag=30s"
echo "M1 127.0.0.1:${port[1]}  M2 127.0.0.1:${port[2]}  balance 127.0.0.1:$bport"
echo "balance -f -b 127.0.0.1 --spin 10s -m '$check' $bport 127.0.0.1:${port[1]} ! 127.0.0.1:${port[2]}"
"$BALANCE" -f -b 127.0.0.1 --control "$dir/ctl" --spin 10s -m "$check" \
    "$bport" "127.0.0.1:${port[1]}" ! "127.0.0.1:${port[2]}" >"$dir/balance.log" 2>&1 &
pids+=("$!")
for _ in $(seq 100); do
    MYSQL_PWD=apppw mariadb --no-defaults -h127.0.0.1 -P"$bport" -uapp -N -e 'SELECT 1' \
        >/dev/null 2>&1 && break
    sleep 0.1
done

# --- load: sysbench in a loop (1.0.20 segfaults on reconnect), and a client --
t0=$(now)
end=$(awk -v t="$t0" -v d="$DUR" 'BEGIN { printf "%.6f", t + d }')
over() { awk -v t="$(now)" -v e="$end" 'BEGIN { exit !(t >= e) }'; }
sysbench_loop() {
    local r=0 left
    while [ $r -lt 50 ] && ! over; do
        r=$((r + 1))
        left=$(awk -v t="$(now)" -v e="$end" 'BEGIN { l = int(e - t); print (l < 1 ? 1 : l) }')
        echo "round $r start $(now)"
        sysbench oltp_read_write --db-driver=mysql --mysql-host=127.0.0.1 \
            --mysql-port="$bport" --mysql-user=app --mysql-password=apppw \
            --tables=1 --table-size=10000 --threads=4 --time="$left" \
            --report-interval=1 --mysql-ignore-errors=all run 2>&1
        echo "round $r rc $? end $(now)"
    done
}
# Each step on a new connection: write the next counter value, then read how
# many of the acknowledged values are visible. A read that sees fewer than
# were acknowledged is stale.
client() {
    local k=0 last=0 acked=0 out i
    for ((i = 0; i < DUR * 50; i++)); do
        over && break
        k=$((k + 1))
        if out=$(MYSQL_PWD=apppw mariadb --no-defaults -h127.0.0.1 -P"$bport" -uapp -N -B \
            --connect-timeout=15 -e "INSERT INTO demo.counter VALUES ($k); SELECT @@port" 2>&1); then
            acked=$((acked + 1)) last=$k
            echo "$(now) W ok $k $out"
        else
            echo "$(now) W err $k ${out//$'\n'/ }"
        fi
        if out=$(MYSQL_PWD=apppw mariadb --no-defaults -h127.0.0.1 -P"$bport" -uapp -N -B \
            --connect-timeout=15 -e "SELECT COUNT(*), @@port FROM demo.counter WHERE n <= $last" 2>&1); then
            echo "$(now) R ok $acked ${out//$'\t'/ }"
        else
            echo "$(now) R err $acked ${out//$'\n'/ }"
        fi
        sleep 0.02
    done
    echo "$(now) END $acked"
}
sysbench_loop >"$dir/sysbench.log" 2>&1 &
sb=$!
pids+=("$sb")
client >"$dir/client.log" 2>&1 &
cl=$!
pids+=("$cl")

at() { sleep "$(awk -v t="$(now)" -v w="$1" -v t0="$t0" 'BEGIN { s = t0 + w - t; print (s > 0 ? s : 0) }')"; }
at "$STOP_SQL_AT"
sql 2 'STOP SLAVE SQL_THREAD'
t_stop=$(now)
at "$KILL_AT"
kill -9 "${pid[1]}"
t_kill=$(now)
wait "${pid[1]}" 2>/dev/null
forget "${pid[1]}"
at $((KILL_AT + APPLY_AFTER))
gtid_seq() { echo "${1##*-}"; }
backlog=$(($(gtid_seq "$(slave Gtid_IO_Pos)") - $(gtid_seq "$(sql 2 'SELECT @@gtid_slave_pos')")))
sql 2 'START SLAVE SQL_THREAD'
t_apply=$(now)
wait "$cl" "$sb"
forget "$cl"
forget "$sb"

# --- what the application saw ------------------------------------------------
echo "mode $mode: load ${DUR}s; M2 stopped applying at +${STOP_SQL_AT}s," \
    "M1 killed at +${KILL_AT}s, M2 applying again at +$((KILL_AT + APPLY_AFTER))s" \
    "(received, not applied then: $backlog transactions)"
awk -v tk="$t_kill" -v ta="$t_apply" -v p2="${port[2]}" '
    $2 == "W" || $2 == "R" { ops++ }
    ($2 == "W" || $2 == "R") && $3 == "err" { err++; if ($1 > tk) errk++; if (!firsterr) firsterr = $0 }
    ($2 == "W" || $2 == "R") && $3 == "ok" {
        if ($1 > tk && !back) back = $1 - tk
        if (prev && $1 - prev > gap) { gap = $1 - prev; gapat = prev - tk }
        prev = $1
    }
    $2 == "W" && $3 == "ok" && $5 == p2 && $1 < ta { stalew++ }
    $2 == "R" && $3 == "ok" && $5 < $4 { stale++; if (!firststale) firststale = $0 }
    $2 == "END" { acked = $3 }
    END {
        printf "client: %d queries, %d errors (%d after the kill), %d writes acknowledged\n", ops, err, errk, acked
        printf "client: first query after the kill succeeded %.2f s after it; longest gap between successes %.2f s (from %+.2f s)\n", back, gap, gapat
        printf "client: stale reads (fewer rows than acknowledged): %d; writes taken by M2 before it applied its backlog: %d\n", stale, stalew
        if (firsterr) print "client: first error: " firsterr
        if (firststale) print "client: first stale read: " firststale
    }' "$dir/client.log"
awk -v tk="$t_kill" '
    /^round .* start/ { rounds++ }
    /^round .* rc/ { if ($4 == 139) segv++; else if ($4 != 0) other++ }
    /err\/s:/ { for (i = 1; i <= NF; i++) { if ($i == "err/s:") errs += $(i + 1); if ($i == "tps:") tps += $(i + 1) } }
    /transactions:/ { tx += $2 }
    /ignored errors:/ { ign += $3 }
    /FATAL|error [0-9]+/ { fatal++ }
    END {
        printf "sysbench: %d rounds (%d segfaults, %d other failures), about %d transactions (per-second reports), errors: %d (per-second reports), %d (totals of finished rounds), %d FATAL/error lines\n", rounds, segv, other, tps, errs, ign, fatal
    }' "$dir/sysbench.log"
grep -E 'channel (down|up|catching)' "$dir/balance.log" | sed 's/^/balance: /'
acked=$(awk '$2 == "END" { print $3 }' "$dir/client.log")
sleep 1
echo "after the run, M2 has $(sql 2 'SELECT COUNT(*) FROM demo.counter') counter rows of $acked acknowledged;" \
    "replication: Slave_SQL_Running=$(slave Slave_SQL_Running), last SQL error: $(slave Last_SQL_Error | cut -c1-160)"
