#!/usr/bin/env bash
# Fleet benchmark for steward: one controller and N agents (real processes) on this machine.
#
#   benches/fleet.sh [N_AGENTS=200]
#
# Times enrollment (first agent start -> all N online), then a fleet plan, apply and no-op plan of
# a 50-resource document on every agent (max_concurrency 50), and reports the controller's peak RSS
# and the agents' total RSS. Fails only on wrong results, never because something is slow.
# Everything lives under a fresh /dev/shm/steward-fleet.XXXXXX, removed at exit (KEEP=1 keeps it);
# STEWARD_BENCH_DIR=/some/disk/dir puts it on a real disk instead, where the controller's store
# pays for its fsyncs (tmpfs makes them free).
#
# Environment:
#   STEWARD_BIN   the binary (default: $CARGO_TARGET_DIR/release/steward, else target/release/steward)
#   KEEP=1        keep the work dir
#   STEWARD_BENCH_DIR  where the work dir is made (default /dev/shm)
set -euo pipefail

N=${1:-200}
if ! [[ $N =~ ^[0-9]+$ ]] || (( N < 1 )); then
    echo "usage: $0 [N_AGENTS>=1]" >&2
    exit 2
fi

REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN=${STEWARD_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/release/steward}
if [[ ! -x $BIN ]]; then
    echo "no steward binary at $BIN (build with cargo build --release, or set STEWARD_BIN)" >&2
    exit 2
fi
if [[ ! -x /usr/bin/time ]]; then
    apt-get install -y time >/dev/null
fi
command -v python3 >/dev/null || { echo "python3 is needed" >&2; exit 2; }

W=$(mktemp -d "${STEWARD_BENCH_DIR:-/dev/shm}/steward-fleet.XXXXXX")
PIDS=()
cleanup() {
    local i
    # Agents first (newest first), the controller last, so agents do not log a lost connection.
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill "${PIDS[i]}" 2>/dev/null || true; done
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do wait "${PIDS[i]}" 2>/dev/null || true; done
    if [[ ${KEEP:-0} == 1 ]]; then echo "work dir kept: $W" >&2; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$2"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
# cpu_all -> the CPU seconds (user + nice + sys + irq + softirq) of the whole machine so far.
cpu_all() {
    awk -v hz="$(getconf CLK_TCK)" '/^cpu / {printf "%.2f\n", ($2 + $3 + $4 + $7 + $8) / hz}' /proc/stat
}
# cpu_s PID... -> the CPU seconds (user + sys) those processes have used so far.
cpu_s() {
    python3 -c '
import os, sys
hz = os.sysconf("SC_CLK_TCK")
t = 0
for p in sys.argv[1:]:
    try:
        f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        t += int(f[11]) + int(f[12])
    except OSError:
        pass
print(f"{t / hz:.2f}")' "$@"
}

echo "fleet bench: N=$N agents, binary $BIN, work dir $W"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
mkdir -p "$W/logs" "$W/agents" "$W/project"
D=$W/ctl

# 1. The controller.
"$BIN" serve --data-dir "$D" --listen 127.0.0.1:0 --http 127.0.0.1:0 2>"$W/logs/serve.log" &
PIDS+=($!)
for _ in $(seq 1 300); do
    [[ -s $D/endpoints.json ]] && break
    sleep 0.1
done
[[ -s $D/endpoints.json ]] || { cat "$W/logs/serve.log" >&2; fail "controller did not write endpoints.json"; }
read -r AGENTS HTTP SERVE_PID < <(python3 -c '
import json, sys
e = json.load(open(sys.argv[1]))
print(e["agents"], e["http"], e["pid"])' "$D/endpoints.json")
export STEWARD_CONTROLLER=$HTTP STEWARD_TOKEN_FILE=$D/admin.token

# 2. Tokens, then agents.
TOKENS=()
T_TOKSTART=$(now)
for i in $(seq 1 "$N"); do
    TOKENS+=("$("$BIN" token create --data-dir "$D" --ttl 1h --name "web-$i" --tags role=web)")
done

count_online() {
    "$BIN" nodes --format json 2>/dev/null | python3 -c '
import json, sys
try:
    answer = json.load(sys.stdin)
    # `nodes --format json` is an envelope since issue 15 (a bare array before).
    nodes = answer["nodes"] if isinstance(answer, dict) else answer
    print(sum(1 for n in nodes if n.get("online")))
except Exception:
    print(0)'
}

T_TOK=$(now)
TOKENS_S=$(elapsed "$T_TOKSTART" "$T_TOK")
echo "tokens: $N created in $TOKENS_S s"

# Builds before issue 15 spelled the agent's flags --controller and --state-dir; the bench
# compares against them.
if "$BIN" agent --help 2>/dev/null | grep -q -- '--connect'; then
    AGENT_FLAGS=(--connect --data-dir)
else
    AGENT_FLAGS=(--controller --state-dir)
fi
M0=$(cpu_all)
T0=$(now)
for i in $(seq 1 "$N"); do
    a=$W/agents/web-$i
    mkdir -p "$a/root" "$a/state"
    (umask 077; printf '%s\n' "${TOKENS[$((i - 1))]}" > "$a/join.token")
    "$BIN" agent --root "$a/root" "${AGENT_FLAGS[0]}" "$AGENTS" --join-token-file "$a/join.token" \
        --name "web-$i" "${AGENT_FLAGS[1]}" "$a/state" 2>"$W/logs/agent-$i.log" &
    PIDS+=($!)
done
T_STARTED=$(now)
ONLINE=0
DEADLINE=$(( $(date +%s) + 600 ))
while :; do
    ONLINE=$(count_online)
    (( ONLINE >= N )) && break
    (( $(date +%s) > DEADLINE )) && fail "only $ONLINE of $N agents online after 600 s"
    sleep 0.2
done
T_ONLINE=$(now)
ENROLL_S=$(elapsed "$T0" "$T_ONLINE")
SPAWN_S=$(elapsed "$T0" "$T_STARTED")
echo "enroll: $N agents online in $ENROLL_S s (spawning them took $SPAWN_S s)"
AGENT_PIDS=("${PIDS[@]:1}")
CPU_ENROLL="serve $(cpu_s "$SERVE_PID") s since start, machine $(elapsed "$M0" "$(cpu_all)") s"

# 3. The project: one association, one document of 50 resources.
P=$W/project
cat >"$P/site.yaml" <<'EOF'
steward: 1
associations:
  web:
    targets: { tags: { role: web } }
    documents: [web.yaml]
    max_concurrency: 50
    max_errors: "10%"
EOF
{
    echo 'steward: 1'
    echo 'resources:'
    echo '  directory:/srv: { mode: "0755" }'
    echo '  directory:/srv/app: { mode: "0755" }'
    for k in $(seq -w 1 48); do
        echo "  file:/srv/app/f$k:"
        echo "    content: \"{{ node.name }} file $k\\n\""
        echo '    mode: "0644"'
    done
} >"$P/web.yaml"

# 4. Plan, apply, plan again; each timed with /usr/bin/time.
# run_timed NAME EXPECTED_EXIT CMD...  -> sets TIME_<NAME> ("X s Y KB") and checks the exit code.
run_timed() {
    local name=$1 want=$2 rc=0 s0 a0 s1 a1
    shift 2
    s0=$(cpu_s "$SERVE_PID"); a0=$(cpu_all)
    /usr/bin/time -f '%e s %M KB' -o "$W/logs/$name.time" "$@" >"$W/logs/$name.out" 2>"$W/logs/$name.err" || rc=$?
    local t
    t=$(tail -n1 "$W/logs/$name.time")
    s1=$(cpu_s "$SERVE_PID"); a1=$(cpu_all)
    printf -v "TIME_${name}" '%s' "$t"
    printf -v "CPU_${name}" 'serve %s s, machine %s s' "$(elapsed "$s0" "$s1")" "$(elapsed "$a0" "$a1")"
    echo "$name: exit $rc, $t (CPU: serve $(elapsed "$s0" "$s1") s, machine $(elapsed "$a0" "$a1") s)"
    if (( rc != want )); then
        tail -n 30 "$W/logs/$name.out" "$W/logs/$name.err" >&2
        return 1
    fi
}

run_timed plan 2 "$BIN" plan "$P" --detailed-exitcode || fail "first plan: expected exit 2 (changes)"
run_timed apply 0 "$BIN" apply "$P" --yes || fail "apply did not succeed"

# Check a few agents' roots (and all of them for the file count).
for i in 1 $(( (N + 1) / 2 )) "$N"; do
    for k in 01 24 48; do
        f=$W/agents/web-$i/root/srv/app/f$k
        [[ -f $f ]] || fail "web-$i: $f missing"
        want="web-$i file $k"
        [[ $(cat "$f") == "$want" ]] || fail "web-$i: $f holds '$(cat "$f")', expected '$want'"
    done
done
MISSING=0
for i in $(seq 1 "$N"); do
    c=$(find "$W/agents/web-$i/root/srv/app" -maxdepth 1 -type f 2>/dev/null | wc -l)
    (( c == 48 )) || { echo "web-$i: $c of 48 files" >&2; MISSING=$((MISSING + 1)); }
done
(( MISSING == 0 )) || fail "$MISSING agents lack files after apply"

run_timed replan 0 "$BIN" plan "$P" --detailed-exitcode || fail "plan after apply is not a no-op"

# Memory: controller peak, agents' current total.
SERVE_HWM=$(awk '/^VmHWM/ {print $2}' "/proc/$SERVE_PID/status")
SERVE_RSS=$(awk '/^VmRSS/ {print $2}' "/proc/$SERVE_PID/status")
# VmRSS counts the shared pages (the binary's text) in every agent; Pss shares them out.
read -r AGENTS_RSS AGENTS_PSS AGENTS_HWM_MAX < <(python3 -c '
import sys
rss = pss = hwm = 0
for p in sys.argv[1:]:
    try:
        for line in open(f"/proc/{p}/status"):
            k, v = line.split(":", 1)
            if k == "VmRSS": rss += int(v.split()[0])
            if k == "VmHWM": hwm = max(hwm, int(v.split()[0]))
        for line in open(f"/proc/{p}/smaps_rollup"):
            if line.startswith("Pss:"): pss += int(line.split()[1])
    except OSError:
        pass
print(rss, pss, hwm)' "${AGENT_PIDS[@]}")
STILL_ONLINE=$(count_online)

# Errors and warnings in the logs (context, not a failure).
SERVE_ERRS=$(grep -ciE 'error|warn|panic' "$W/logs/serve.log" || true)
AGENT_ERRS=$(cat "$W"/logs/agent-*.log | grep -ciE 'error|warn|panic' || true)

echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-34s %s\n' "figure (N=$N agents, 50 resources)" "value"
printf '%-34s %s\n' "token create x N" "$TOKENS_S s"
printf '%-34s %s\n' "enroll (first start -> all online)" "$ENROLL_S s (spawning: $SPAWN_S s; CPU: $CPU_ENROLL)"
printf '%-34s %s\n' "plan (exit 2)" "$TIME_plan (CPU: $CPU_plan)"
printf '%-34s %s\n' "apply (exit 0)" "$TIME_apply (CPU: $CPU_apply)"
printf '%-34s %s\n' "no-op plan (exit 0)" "$TIME_replan (CPU: $CPU_replan)"
printf '%-34s %s\n' "controller peak RSS (VmHWM)" "$((SERVE_HWM / 1024)) MB ($SERVE_HWM KB; now $SERVE_RSS KB)"
printf '%-34s %s\n' "agents' total RSS (sum of VmRSS)" "$((AGENTS_RSS / 1024)) MB (sum of Pss $((AGENTS_PSS / 1024)) MB; largest agent peak $AGENTS_HWM_MAX KB)"
printf '%-34s %s\n' "online at end" "$STILL_ONLINE of $N"
printf '%-34s %s\n' "error/warn lines in logs" "serve $SERVE_ERRS, agents $AGENT_ERRS"
if [[ ${KEEP:-0} == 1 ]]; then echo "logs in $W/logs"; fi
