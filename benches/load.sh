#!/usr/bin/env bash
# Loading benchmark (issue 11): the same N resources written in YAML and in KDL, validated.
#
#   benches/load.sh [N]
#
# Generates two one-file projects that load to the same model (N `file` resources with a mode
# and a content line each), checks both are valid, then times `steward validate` on each RUNS
# times, alternating, and prints the medians, the KDL/YAML ratio and peak RSS. The target is
# KDL within 2x of YAML. See benches/README.md.
#
# Environment:
#   STEWARD_BIN   the binary (default: target/release/steward; built when missing)
#   RUNS          timed runs of each (default 7)
set -euo pipefail

N=${1:-40000}
RUNS=${RUNS:-7}
if ! [[ $N =~ ^[0-9]+$ ]] || (( N < 1 )); then
    echo "usage: $0 [N>=1]" >&2
    exit 2
fi

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STEWARD_BIN=${STEWARD_BIN:-$REPO/target/release/steward}
if [[ ! -x $STEWARD_BIN ]]; then
    (cd "$REPO" && cargo build --release)
fi
if [[ ! -x /usr/bin/time ]]; then
    apt-get install -y time >/dev/null || { apt-get update >/dev/null && apt-get install -y time >/dev/null; }
fi

WORK=$(mktemp -d /dev/shm/steward-load.XXXXXX 2>/dev/null || mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/yaml" "$WORK/kdl"

python3 - "$N" "$WORK" <<'EOF'
import sys
n, work = int(sys.argv[1]), sys.argv[2]
with open(f"{work}/yaml/site.yaml", "w") as f:
    f.write("steward: 1\nresources:\n")
    for i in range(n):
        f.write(f'  file:/srv/f{i}:\n    mode: "0644"\n    content: "hello {i}\\n"\n')
with open(f"{work}/kdl/site.kdl", "w") as f:
    f.write("steward 1\n")
    for i in range(n):
        f.write(f'file "/srv/f{i}" mode="0644" {{\n    content "hello {i}\\n"\n}}\n')
EOF

for spelling in yaml kdl; do
    out=$("$STEWARD_BIN" validate "$WORK/$spelling" --color never 2>&1) || {
        echo "error: the $spelling project is not valid:" >&2
        echo "$out" | head -20 >&2
        exit 1
    }
    echo "$spelling: $out ($(du -h "$WORK/$spelling"/site.* | cut -f1))"
done

now() { date +%s%N; }
declare -A TIMES RSS
for ((run = 1; run <= RUNS; run++)); do
    for spelling in yaml kdl; do
        start=$(now)
        /usr/bin/time -f "%M" -o "$WORK/rss" "$STEWARD_BIN" validate "$WORK/$spelling" >/dev/null 2>&1
        end=$(now)
        TIMES[$spelling]+="$(( (end - start) / 1000 )) "
        RSS[$spelling]=$(cat "$WORK/rss")
    done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
yaml_us=$(echo "${TIMES[yaml]}" | median)
kdl_us=$(echo "${TIMES[kdl]}" | median)
awk -v y="$yaml_us" -v k="$kdl_us" -v yr="${RSS[yaml]}" -v kr="${RSS[kdl]}" -v n="$N" -v runs="$RUNS" 'BEGIN {
    printf "\n%-6s %10s %12s\n", "spelling", "median s", "peak RSS MB"
    printf "%-6s %10.3f %12.1f\n", "yaml", y / 1e6, yr / 1024
    printf "%-6s %10.3f %12.1f\n", "kdl", k / 1e6, kr / 1024
    printf "KDL / YAML: %.2fx (target: at most 2x), N = %d, %d runs each\n", k / y, n, runs
}'
