#!/usr/bin/env bash
# Scale-out benchmark for steward (issue 16): N agents (real processes) on this machine, served
# by one embedded-SQLite controller or by CONTROLLERS controllers sharing one PostgreSQL database.
#
#   benches/fleet_shared.sh [N_AGENTS=200]                              # one controller, SQLite
#   CONTROLLERS=1 DATABASE=postgres://steward@127.0.0.1:55432/postgres benches/fleet_shared.sh 200
#   CONTROLLERS=2 DATABASE=postgres://steward@127.0.0.1:55432/postgres benches/fleet_shared.sh 1000
#
# Times enrollment (first agent start -> all N connected), then, through the first controller, a
# fleet plan, an apply of a 50-resource document to every agent (max_concurrency 20%) and a no-op
# plan; reports each controller's memory per connected agent (over a baseline taken before any
# agent connected) and the store's rows and bytes before and after each run. Fails only on wrong
# results, never because something is slow.
#
# With DATABASE the script creates a database of its own on that server (steward_bench_*), named
# in the output, and drops it at exit; the URL's own database is only used to create and drop it.
# Agents are split round-robin over the controllers; each agent's --connect lists its controller
# first and the others after it. Everything else lives under a fresh
# /dev/shm/steward-fleet-shared.XXXXXX, removed at exit.
#
# Environment:
#   CONTROLLERS      how many controllers (default 1; more than one needs DATABASE)
#   DATABASE         a PostgreSQL URL (postgres://ROLE@HOST:PORT/DB) whose role may create
#                    databases; without it, the embedded SQLite store
#   MAX_CONCURRENCY  the association's max_concurrency (default 20%)
#   WAVE             start the agents WAVE at a time, waiting for each wave to connect before the
#                    next (default 0: all at once)
#   ALLOW_UNREACHED=1  report, instead of failing on, agents the apply did not reach and runs
#                    whose exit code says so (an apply through one controller reaches only its
#                    own agents until work routing lands); the figures are then marked invalid
#   STEWARD_BIN      the binary (default: $CARGO_TARGET_DIR/release/steward, else target/release/steward)
#   KEEP=1           keep the work dir and the database
#   STEWARD_BENCH_DIR  where the work dir is made (default /dev/shm)
set -euo pipefail

N=${1:-200}
C=${CONTROLLERS:-1}
DATABASE=${DATABASE:-}
MAX_CONCURRENCY=${MAX_CONCURRENCY:-20%}
WAVE=${WAVE:-0}
ALLOW_UNREACHED=${ALLOW_UNREACHED:-0}
usage() { echo "usage: [CONTROLLERS=C] [DATABASE=postgres://...] $0 [N_AGENTS>=1]: $*" >&2; exit 2; }
[[ $N =~ ^[0-9]+$ ]] && (( N >= 1 )) || usage "N_AGENTS must be a number >= 1"
[[ $C =~ ^[0-9]+$ ]] && (( C >= 1 )) || usage "CONTROLLERS must be a number >= 1"
[[ $WAVE =~ ^[0-9]+$ ]] || usage "WAVE must be a number (0: all at once)"
(( C == 1 )) || [[ -n $DATABASE ]] || usage "CONTROLLERS=$C needs DATABASE (the embedded store is one controller's)"
STORE_KIND=SQLite
if [[ -n $DATABASE ]]; then
    STORE_KIND=PostgreSQL
    command -v psql >/dev/null || usage "DATABASE needs psql (apt-get install postgresql-client)"
fi

REPO=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=benches/lib/fleet.sh
. "$REPO/benches/lib/fleet.sh"
BIN=$(steward_bin "$REPO")
need_tools

# Each controller holds a descriptor per agent connection, and the script's children inherit
# its limit: make room for all N on one controller (the agents fail over) plus its store.
NEED_FDS=$(( N + 1024 ))
if (( $(ulimit -Sn) < NEED_FDS )); then
    HARD=$(ulimit -Hn)
    if [[ $HARD != unlimited ]] && (( HARD < NEED_FDS )); then
        usage "N=$N needs $NEED_FDS open files per process; the hard limit is $HARD"
    fi
    ulimit -Sn "$NEED_FDS"
fi

W=$(mktemp -d "${STEWARD_BENCH_DIR:-/dev/shm}/steward-fleet-shared.XXXXXX")
AGENT_PIDS=()
SERVE_PIDS=()
DB_NAME=
cleanup() {
    local i
    # Agents first (newest first), the controllers last, so agents do not log a lost connection.
    for ((i = ${#AGENT_PIDS[@]} - 1; i >= 0; i--)); do kill "${AGENT_PIDS[i]}" 2>/dev/null || true; done
    for ((i = ${#AGENT_PIDS[@]} - 1; i >= 0; i--)); do wait "${AGENT_PIDS[i]}" 2>/dev/null || true; done
    for ((i = ${#SERVE_PIDS[@]} - 1; i >= 0; i--)); do kill "${SERVE_PIDS[i]}" 2>/dev/null || true; done
    for ((i = ${#SERVE_PIDS[@]} - 1; i >= 0; i--)); do wait "${SERVE_PIDS[i]}" 2>/dev/null || true; done
    if [[ ${KEEP:-0} == 1 ]]; then
        echo "work dir kept: $W" >&2
        [[ -z $DB_NAME ]] || echo "database kept: $DB_URL" >&2
    else
        rm -rf "$W"
        if [[ -n $DB_NAME ]]; then
            psql -X -q -v ON_ERROR_STOP=1 "$DATABASE" -c "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" \
                || echo "could not drop the database $DB_NAME on $DATABASE" >&2
        fi
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "fleet_shared bench: N=$N agents, $C controller(s) on $STORE_KIND, max_concurrency $MAX_CONCURRENCY, binary $BIN, work dir $W"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg); open files per process: $(ulimit -Sn)"
mkdir -p "$W/logs" "$W/agents" "$W/project" "$W/db"

# 1. The store: a fresh database on the server, or the first controller's SQLite file.
STORE_FLAGS=()
if [[ -n $DATABASE ]]; then
    DB_NAME=steward_bench_$(date +%s)_$$
    DB_URL=$(python3 -c '
import sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
print(urllib.parse.urlunsplit(u._replace(path="/" + sys.argv[2])))' "$DATABASE" "$DB_NAME")
    psql -X -q -v ON_ERROR_STOP=1 "$DATABASE" -c "CREATE DATABASE $DB_NAME" \
        || { DB_NAME=; fail "could not create a database on $DATABASE"; }
    echo "database: $DB_URL (dropped at exit)"
    STORE_FLAGS=(--database "$DB_URL" --key-file "$W/steward.key")
fi

# db_snapshot LABEL -> W/db/LABEL.tsv: "TABLE ROWS BYTES" per table of the store, and a line
# "(all) 0 BYTES" for the whole store (the database, or the SQLite file and its WAL).
db_snapshot() {
    local out=$W/db/$1.tsv
    if [[ -n $DATABASE ]]; then
        psql -X -q -A -t -F $'\t' -v ON_ERROR_STOP=1 "$DB_URL" >"$out" <<'SQL'
SELECT format('SELECT %L, count(*), pg_total_relation_size(%L) FROM %I',
              tablename, quote_ident(tablename), tablename)
  FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename
\gexec
SELECT '(all)', 0, pg_database_size(current_database());
SQL
    else
        python3 - "$W/ctl-1/steward.db" >"$out" <<'PY'
import os, sqlite3, sys
path = sys.argv[1]
db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
tables = [r[0] for r in db.execute(
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
# dbstat (pages per b-tree, tables and their indexes) is compiled into Debian's sqlite3 module.
try:
    size = dict(db.execute(
        "SELECT m.tbl_name, sum(s.pgsize) FROM dbstat s JOIN sqlite_master m ON s.name = m.name"
        " GROUP BY m.tbl_name"))
except sqlite3.Error:
    size = {}
for t in tables:
    rows = db.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]
    print(f"{t}\t{rows}\t{size.get(t, 0)}")
files = sum(os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s))
print(f"(all)\t0\t{files}")
PY
    fi
}

# 2. The controllers, one after the other (the first creates the key file the others read).
AGENT_ADDRS=()
HTTPS=()
for c in $(seq 1 "$C"); do
    d=$W/ctl-$c
    "$BIN" serve --data-dir "$d" --listen 127.0.0.1:0 --http 127.0.0.1:0 "${STORE_FLAGS[@]}" \
        2>"$W/logs/serve-$c.log" &
    SERVE_PIDS+=($!)
    read -r addr http pid < <(wait_endpoints "$d" "$W/logs/serve-$c.log")
    [[ $pid == "${SERVE_PIDS[c - 1]}" ]] || fail "controller $c: endpoints.json names pid $pid, started $!"
    AGENT_ADDRS+=("$addr")
    HTTPS+=("$http")
done
export STEWARD_CONTROLLER=${HTTPS[0]} STEWARD_TOKEN_FILE=$W/ctl-1/admin.token

# total_online -> the agents connected to any controller.
total_online() {
    local c t=0
    for c in $(seq 0 $((C - 1))); do t=$(( t + $(count_online "${HTTPS[c]}") )); done
    echo "$t"
}

# 3. Tokens (through the first controller's store), then agents.
T_TOKSTART=$(now)
for i in $(seq 1 "$N"); do
    a=$W/agents/web-$i
    mkdir -p "$a/root" "$a/state"
    (umask 077; "$BIN" token create --data-dir "$W/ctl-1" "${STORE_FLAGS[@]}" --ttl 1h \
        --name "web-$i" --tags role=web >"$a/join.token")
done
TOKENS_S=$(elapsed "$T_TOKSTART" "$(now)")
echo "tokens: $N created in $TOKENS_S s"

# The controllers' memory before any agent connects.
BASE_RSS=()
for c in $(seq 0 $((C - 1))); do BASE_RSS+=("$(proc_kb "${SERVE_PIDS[c]}" VmRSS)"); done

# wait_online COUNT -> waits until COUNT agents are connected; fails after 600 s.
wait_online() {
    local online deadline=$(( $(date +%s) + 600 ))
    while :; do
        online=$(total_online)
        (( online >= $1 )) && return 0
        (( $(date +%s) > deadline )) && fail "only $online of $1 agents connected after 600 s"
        sleep 0.2
    done
}

agent_flags
M0=$(cpu_all)
S0=$(cpu_s "${SERVE_PIDS[@]}")
T0=$(now)
WAVES=0
for i in $(seq 1 "$N"); do
    a=$W/agents/web-$i
    # Agent i's controller first, then the others in order.
    first=$(( (i - 1) % C ))
    list=
    for k in $(seq 0 $((C - 1))); do list+=${list:+,}${AGENT_ADDRS[(first + k) % C]}; done
    "$BIN" agent --root "$a/root" "${AGENT_FLAGS[0]}" "$list" --join-token-file "$a/join.token" \
        --name "web-$i" "${AGENT_FLAGS[1]}" "$a/state" 2>"$W/logs/agent-$i.log" &
    AGENT_PIDS+=($!)
    if (( WAVE > 0 && (i % WAVE == 0 || i == N) )); then
        wait_online "$i"
        WAVES=$((WAVES + 1))
    fi
done
T_STARTED=$(now)
wait_online "$N"
T_ONLINE=$(now)
ENROLL_S=$(elapsed "$T0" "$T_ONLINE")
SPAWN_S=$(elapsed "$T0" "$T_STARTED")
CPU_ENROLL="serve $(elapsed "$S0" "$(cpu_s "${SERVE_PIDS[@]}")") s, machine $(elapsed "$M0" "$(cpu_all)") s"
SPAWN_S+=" s"
(( WAVE == 0 )) || SPAWN_S+=" in $WAVES waves of $WAVE, each waited for"
echo "enroll: $N agents connected in $ENROLL_S s (spawning them took $SPAWN_S)"

# Where each agent ended up: agent i was given controller (i-1) % C first; a refused or
# throttled connection sends it on to the next one.
SPLIT=()
MOVED=0
for c in $(seq 0 $((C - 1))); do
    online_names "${HTTPS[c]}" >"$W/online-$((c + 1)).txt"
    SPLIT+=("$(wc -l <"$W/online-$((c + 1)).txt")")
    MOVED=$(( MOVED + $(python3 -c '
import sys
c, n = int(sys.argv[1]), int(sys.argv[2])
print(sum(1 for l in open(sys.argv[3]) if (int(l.strip().split("-")[1]) - 1) % n != c))' "$c" "$C" "$W/online-$((c + 1)).txt") ))
done
# Agents that were refused or throttled at least once while enrolling or connecting (each logs
# it, and tries again or moves on), and the controllers' throttling warnings (one per 10 s).
RETRIED=$( { grep -lE 'enrolling with .*: |cannot connect to ' "$W"/logs/agent-*.log || true; } | wc -l)
THROTTLED=$( { grep -h 'not yet authenticated' "$W"/logs/serve-*.log || true; } | wc -l)
ENROLLED_RSS=()
for c in $(seq 0 $((C - 1))); do ENROLLED_RSS+=("$(proc_kb "${SERVE_PIDS[c]}" VmRSS)"); done
echo "connected per controller: ${SPLIT[*]} ($MOVED not on their first controller; $RETRIED agents retried)"

# 4. The project, then plan, apply and plan again through the first controller.
P=$W/project
if [[ $MAX_CONCURRENCY == *% ]]; then write_project "$P" "\"$MAX_CONCURRENCY\""; else write_project "$P" "$MAX_CONCURRENCY"; fi
INVALID=()
# wrong WHAT -> fails, or with ALLOW_UNREACHED=1 records WHAT and goes on.
ROUTING_NOTE=
(( C == 1 )) || ROUTING_NOTE=" [with $C controllers, a run through controller 1 reaches the agents connected to the others only with work routing (issue 16)]"
wrong() {
    if [[ $ALLOW_UNREACHED == 1 ]]; then
        echo "WRONG (ALLOW_UNREACHED=1, going on): $*" >&2
        INVALID+=("$*")
    else
        fail "$*$ROUTING_NOTE (ALLOW_UNREACHED=1 reports this and goes on)"
    fi
}

db_snapshot 0-enrolled
run_timed plan 2 "$BIN" plan "$P" --detailed-exitcode || wrong "first plan: exit $RC_plan, expected 2 (changes)"
db_snapshot 1-plan
run_timed apply 0 "$BIN" apply "$P" --yes || wrong "apply: exit $RC_apply, expected 0"
db_snapshot 2-apply
UNREACHED=$(agents_without_files "$N")
N_UNREACHED=0
[[ -z $UNREACHED ]] || N_UNREACHED=$(wc -l <<<"$UNREACHED")
if (( N_UNREACHED > 0 )); then
    echo "agents without their 48 files after the apply: $N_UNREACHED of $N (first: $(head -n 5 <<<"$UNREACHED" | tr '\n' ' '))" >&2
    wrong "the apply did not reach $N_UNREACHED of $N agents"
fi
run_timed replan 0 "$BIN" plan "$P" --detailed-exitcode || wrong "no-op plan: exit $RC_replan, expected 0"
db_snapshot 3-noop

# 5. Memory: each controller's over its baseline, per agent connected to it.
MEM_LINES=()
for c in $(seq 0 $((C - 1))); do
    pid=${SERVE_PIDS[c]}
    hwm=$(proc_kb "$pid" VmHWM)
    rss=$(proc_kb "$pid" VmRSS)
    k=${SPLIT[c]}
    per=$(python3 -c '
import sys
base, enrolled, hwm, rss, k = map(int, sys.argv[1:])
print(f"{(enrolled - base) / k:.0f} KB enrolled, {(hwm - base) / k:.0f} KB peak, {(rss - base) / k:.0f} KB at end"
      if k else "no agents")' "${BASE_RSS[c]}" "${ENROLLED_RSS[c]}" "$hwm" "$rss" "$k")
    MEM_LINES+=("controller $((c + 1)): $k agents; VmRSS ${BASE_RSS[c]} KB before them, ${ENROLLED_RSS[c]} KB enrolled, $rss KB at end, VmHWM $hwm KB; per agent $per")
done
read -r AGENTS_RSS AGENTS_PSS AGENTS_HWM_MAX < <(agents_memory "${AGENT_PIDS[@]}")
STILL_ONLINE=$(total_online)
SERVE_ERRS=$(log_problems "$W"/logs/serve-*.log)
AGENT_ERRS=$(log_problems "$W"/logs/agent-*.log)

echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-38s %s\n' "figure (N=$N agents, $C controller(s), $STORE_KIND)" "value"
printf '%-38s %s\n' "token create x N" "$TOKENS_S s"
printf '%-38s %s\n' "enroll (first start -> all connected)" "$ENROLL_S s (spawning: $SPAWN_S; CPU: $CPU_ENROLL)"
printf '%-38s %s\n' "connected per controller" "${SPLIT[*]} ($MOVED not on their first controller; $RETRIED agents retried; $THROTTLED throttling warnings)"
printf '%-38s %s\n' "plan (exit 2)" "exit $RC_plan, $TIME_plan (CPU: $CPU_plan)"
printf '%-38s %s\n' "apply (exit 0, max_conc. $MAX_CONCURRENCY)" "exit $RC_apply, $TIME_apply (CPU: $CPU_apply)"
printf '%-38s %s\n' "agents with all 48 files" "$((N - N_UNREACHED)) of $N"
printf '%-38s %s\n' "no-op plan (exit 0)" "exit $RC_replan, $TIME_replan (CPU: $CPU_replan)"
for line in "${MEM_LINES[@]}"; do printf '%-38s %s\n' "controller memory" "$line"; done
printf '%-38s %s\n' "agents' total RSS (sum of VmRSS)" "$((AGENTS_RSS / 1024)) MB (sum of Pss $((AGENTS_PSS / 1024)) MB; largest agent peak $AGENTS_HWM_MAX KB)"
printf '%-38s %s\n' "connected at end" "$STILL_ONLINE of $N"
printf '%-38s %s\n' "error/warn lines in logs" "serve $SERVE_ERRS, agents $AGENT_ERRS"

# The store: rows and bytes per table after enrollment and after each run.
echo
python3 - "$N" "$W"/db/0-enrolled.tsv "$W"/db/1-plan.tsv "$W"/db/2-apply.tsv "$W"/db/3-noop.tsv <<'PY'
import sys
n = int(sys.argv[1])
steps = ["enrolled", "+plan", "+apply", "+no-op"]
snaps = []
for path in sys.argv[2:]:
    snap = {}
    for line in open(path):
        if line.strip():
            t, rows, size = line.rstrip("\n").split("\t")
            snap[t] = (int(rows), int(size))
    snaps.append(snap)
tables = sorted({t for s in snaps for t in s if t != "(all)"}) + ["(all)"]
print(f"{'store: rows (bytes)':<20}" + "".join(f"{s:>24}" for s in steps))
for t in tables:
    cells = []
    for i, s in enumerate(snaps):
        rows, size = s.get(t, (0, 0))
        if i == 0:
            cells.append(f"{'' if t == '(all)' else rows} ({size // 1024} KB)")
        else:
            prow, psize = snaps[i - 1].get(t, (0, 0))
            cells.append(f"{'' if t == '(all)' else f'{rows - prow:+d}'} ({(size - psize) / 1024:+.0f} KB)")
    print(f"{t:<20}" + "".join(f"{c:>24}" for c in cells))
a0 = sum(r for t, (r, _) in snaps[1].items() if t != "(all)")
a1 = sum(r for t, (r, _) in snaps[2].items() if t != "(all)")
b0, b1 = snaps[1]["(all)"][1], snaps[2]["(all)"][1]
print(f"the apply run added {a1 - a0} rows and {(b1 - b0) / 1024:.0f} KB: "
      f"{(a1 - a0) / n:.1f} rows and {(b1 - b0) / n / 1024:.1f} KB per node")
PY

if [[ ${KEEP:-0} == 1 ]]; then echo "logs in $W/logs"; fi
if (( ${#INVALID[@]} > 0 )); then
    echo
    echo "NOT VALID FIGURES (ALLOW_UNREACHED=1): ${#INVALID[@]} wrong result(s)$ROUTING_NOTE:" >&2
    printf '  - %s\n' "${INVALID[@]}" >&2
    exit 3
fi
