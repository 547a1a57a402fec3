# Helpers shared by benches/fleet.sh and benches/fleet_shared.sh; sourced, never run.
#
# They expect, from the script that sources them: `set -euo pipefail`, BIN (the steward binary),
# W (the work dir, with W/logs), and SERVE_PIDS (an array of the controllers' process ids) by the
# time run_timed is called. Every function fails loudly (`fail`) on a wrong result and never on
# a slow one.

# steward_bin REPO -> prints the binary to measure: STEWARD_BIN, else the release build in
# CARGO_TARGET_DIR or REPO/target; exits 2 when it is missing.
steward_bin() {
    local bin=${STEWARD_BIN:-${CARGO_TARGET_DIR:-$1/target}/release/steward}
    if [[ ! -x $bin ]]; then
        echo "no steward binary at $bin (build with cargo build --release, or set STEWARD_BIN)" >&2
        exit 2
    fi
    printf '%s\n' "$bin"
}

# need_tools -> GNU time (installed when missing) and python3.
need_tools() {
    if [[ ! -x /usr/bin/time ]]; then
        apt-get install -y time >/dev/null
    fi
    command -v python3 >/dev/null || { echo "python3 is needed" >&2; exit 2; }
}

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

# proc_kb PID FIELD -> a field of /proc/PID/status in KB (VmRSS, VmHWM).
proc_kb() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"; }

# wait_endpoints DATA_DIR LOG -> prints "AGENT_ADDR HTTP_ORIGIN PID" once the controller that
# uses DATA_DIR wrote its endpoints.json; fails (showing LOG) after 30 s.
wait_endpoints() {
    local d=$1 log=$2
    for _ in $(seq 1 300); do
        [[ -s $d/endpoints.json ]] && break
        sleep 0.1
    done
    [[ -s $d/endpoints.json ]] || { cat "$log" >&2; fail "controller in $d did not write endpoints.json"; }
    python3 -c '
import json, sys
e = json.load(open(sys.argv[1]))
print(e["agents"], e["http"], e["pid"])' "$d/endpoints.json"
}

# online_names [HTTP] -> the names of the nodes connected to the controller whose API is HTTP
# (default: STEWARD_CONTROLLER), one a line; nothing when the API does not answer.
online_names() {
    STEWARD_CONTROLLER=${1:-$STEWARD_CONTROLLER} "$BIN" nodes --format json 2>/dev/null | python3 -c '
import json, sys
try:
    answer = json.load(sys.stdin)
    # `nodes --format json` is an envelope since issue 15 (a bare array before).
    nodes = answer["nodes"] if isinstance(answer, dict) else answer
    for n in nodes:
        if n.get("online"):
            print(n["name"])
except Exception:
    pass'
}

# count_online [HTTP] -> how many nodes are connected to that controller.
count_online() { online_names "$@" | wc -l; }

# agent_flags -> sets AGENT_FLAGS to the binary's spelling of (controller list, state dir):
# builds before issue 15 spelled them --controller and --state-dir; the benches compare with them.
agent_flags() {
    if "$BIN" agent --help 2>/dev/null | grep -q -- '--connect'; then
        AGENT_FLAGS=(--connect --data-dir)
    else
        AGENT_FLAGS=(--controller --state-dir)
    fi
}

# write_project DIR MAX_CONCURRENCY -> one association (role=web, max_errors 10%) and one
# document of 50 resources: /srv, /srv/app and 48 files whose content names the node.
write_project() {
    local p=$1 k
    cat >"$p/site.yaml" <<EOF
steward: 1
associations:
  web:
    targets: { tags: { role: web } }
    documents: [web.yaml]
    max_concurrency: $2
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
    } >"$p/web.yaml"
}

# run_timed NAME EXPECTED_EXIT CMD... -> runs CMD under /usr/bin/time; sets TIME_<NAME> ("X s Y
# KB"), CPU_<NAME> (the controllers' and the machine's CPU seconds over it) and RC_<NAME>;
# returns 1 (after showing the output's tail) when the exit code is not EXPECTED_EXIT.
run_timed() {
    local name=$1 want=$2 rc=0 s0 a0 s1 a1 t
    shift 2
    s0=$(cpu_s "${SERVE_PIDS[@]}"); a0=$(cpu_all)
    /usr/bin/time -f '%e s %M KB' -o "$W/logs/$name.time" "$@" >"$W/logs/$name.out" 2>"$W/logs/$name.err" || rc=$?
    t=$(tail -n1 "$W/logs/$name.time")
    s1=$(cpu_s "${SERVE_PIDS[@]}"); a1=$(cpu_all)
    printf -v "TIME_${name}" '%s' "$t"
    printf -v "CPU_${name}" 'serve %s s, machine %s s' "$(elapsed "$s0" "$s1")" "$(elapsed "$a0" "$a1")"
    printf -v "RC_${name}" '%s' "$rc"
    echo "$name: exit $rc, $t (CPU: serve $(elapsed "$s0" "$s1") s, machine $(elapsed "$a0" "$a1") s)"
    if (( rc != want )); then
        tail -n 30 "$W/logs/$name.out" "$W/logs/$name.err" >&2
        return 1
    fi
}

# agents_without_files N -> checks every agent web-1..web-N under W/agents: three agents' files
# by content (fails on a wrong content, which is never a matter of reach), every agent's 48
# files by count; prints the names of the agents that lack some, one a line.
agents_without_files() {
    local n=$1 i k f want c
    for i in 1 $(( (n + 1) / 2 )) "$n"; do
        for k in 01 24 48; do
            f=$W/agents/web-$i/root/srv/app/f$k
            [[ -f $f ]] || continue
            want="web-$i file $k"
            [[ $(cat "$f") == "$want" ]] || fail "web-$i: $f holds '$(cat "$f")', expected '$want'"
        done
    done
    for i in $(seq 1 "$n"); do
        c=$(find "$W/agents/web-$i/root/srv/app" -maxdepth 1 -type f 2>/dev/null | wc -l)
        (( c == 48 )) || echo "web-$i"
    done
}

# agents_memory PID... -> "SUM_VmRSS SUM_Pss MAX_VmHWM" in KB over those processes. VmRSS counts
# the shared pages (the binary's text) in every agent; Pss shares them out.
agents_memory() {
    python3 -c '
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
print(rss, pss, hwm)' "$@"
}

# log_problems FILE... -> how many lines of those logs say error, warn or panic.
log_problems() { cat "$@" 2>/dev/null | grep -ciE 'error|warn|panic' || true; }
