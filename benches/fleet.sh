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
# shellcheck source=benches/lib/fleet.sh
. "$REPO/benches/lib/fleet.sh"
BIN=$(steward_bin "$REPO")
need_tools

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

echo "fleet bench: N=$N agents, binary $BIN, work dir $W"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
mkdir -p "$W/logs" "$W/agents" "$W/project"
D=$W/ctl

# 1. The controller.
"$BIN" serve --data-dir "$D" --listen 127.0.0.1:0 --http 127.0.0.1:0 2>"$W/logs/serve.log" &
PIDS+=($!)
read -r AGENTS HTTP SERVE_PID < <(wait_endpoints "$D" "$W/logs/serve.log")
SERVE_PIDS=("$SERVE_PID")
export STEWARD_CONTROLLER=$HTTP STEWARD_TOKEN_FILE=$D/admin.token

# 2. Tokens, then agents.
TOKENS=()
T_TOKSTART=$(now)
for i in $(seq 1 "$N"); do
    TOKENS+=("$("$BIN" token create --data-dir "$D" --ttl 1h --name "web-$i" --tags role=web)")
done

T_TOK=$(now)
TOKENS_S=$(elapsed "$T_TOKSTART" "$T_TOK")
echo "tokens: $N created in $TOKENS_S s"

agent_flags
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
write_project "$P" 50

# 4. Plan, apply, plan again; each timed with /usr/bin/time.
run_timed plan 2 "$BIN" plan "$P" --detailed-exitcode || fail "first plan: expected exit 2 (changes)"
run_timed apply 0 "$BIN" apply "$P" --yes || fail "apply did not succeed"

# Every agent's files: three agents' by content, all of them by count.
UNREACHED=$(agents_without_files "$N")
[[ -z $UNREACHED ]] || fail "$(wc -l <<<"$UNREACHED") agents lack files after apply:" $UNREACHED

run_timed replan 0 "$BIN" plan "$P" --detailed-exitcode || fail "plan after apply is not a no-op"

# Memory: controller peak, agents' current total.
SERVE_HWM=$(proc_kb "$SERVE_PID" VmHWM)
SERVE_RSS=$(proc_kb "$SERVE_PID" VmRSS)
read -r AGENTS_RSS AGENTS_PSS AGENTS_HWM_MAX < <(agents_memory "${AGENT_PIDS[@]}")
STILL_ONLINE=$(count_online)

# Errors and warnings in the logs (context, not a failure).
SERVE_ERRS=$(log_problems "$W/logs/serve.log")
AGENT_ERRS=$(log_problems "$W"/logs/agent-*.log)

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
