#!/usr/bin/env bash
# Apply of one changed file, the common case of a small change (issue 13: one file applied must
# not flush a whole busy file system).
#
#   benches/one_file.sh WORKDIR
#
# Applies a project of one `file` resource whose content changes on every run, RUNS times, into
# WORKDIR (put it on the disk to measure, not tmpfs), and prints the median wall time of the
# apply twice: on a quiet file system, and with BUSY_MB megabytes of another program's writes
# left dirty in the page cache on the same file system just before each apply (what a database
# or a build leaves behind; `syncfs` must write them back, an fsync of one file need not).
#
# Environment:
#   STEWARD_BIN   the binary (default: target/release/steward)
#   RUNS          applies per case; the median is reported (default 15)
#   BUSY_MB       megabytes of dirty data for the busy case (default 256)
set -euo pipefail

WORK=${1:?usage: $0 WORKDIR}
RUNS=${RUNS:-15}
BUSY_MB=${BUSY_MB:-256}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STEWARD_BIN=${STEWARD_BIN:-$REPO/target/release/steward}

mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
rm -rf "$WORK/project" "$WORK/root" "$WORK/state" "$WORK/dirty"
mkdir -p "$WORK/project" "$WORK/root/etc" "$WORK/state"
echo "== $(df -T "$WORK" | awk 'NR==2 {print $2, $1}') at $WORK; load: $(cut -d' ' -f1-3 /proc/loadavg)"

write_project() { # write_project N: the one file's content names the run
    cat > "$WORK/project/site.yaml" <<YAML
steward: 1
resources:
  file:/etc/app.conf:
    content: "run $1\n"
    mode: "0644"
YAML
}

apply() {
    "$STEWARD_BIN" apply "$WORK/project" --root "$WORK/root" --state-dir "$WORK/state" --yes \
        > "$WORK/apply.log" 2>&1
}

median_ms() { sort -n | awk '{a[NR]=$1} END {printf "%.1f", (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

run_case() { # run_case LABEL BUSY(0|1)
    local label=$1 busy=$2 i t0 t1 times=()
    for ((i = 0; i < RUNS; i++)); do
        write_project "$label-$i"
        sync
        if (( busy )); then
            # Dirty pages of another program, left for the kernel to write back later.
            dd if=/dev/zero of="$WORK/dirty" bs=1M count="$BUSY_MB" status=none
        fi
        t0=$(date +%s%N)
        apply
        t1=$(date +%s%N)
        times+=("$(( (t1 - t0) / 1000 ))")
        grep -q "run $label-$i" "$WORK/root/etc/app.conf" || { echo "error: not applied" >&2; exit 1; }
        rm -f "$WORK/dirty"
    done
    printf '%s\n' "${times[@]}" | awk '{print $1 / 1000}' | median_ms | xargs printf '%-28s median of %d: %s ms\n' "$label" "$RUNS"
}

write_project warmup
apply
run_case "quiet file system" 0
run_case "busy (${BUSY_MB} MB dirty)" 1
rm -rf "$WORK/project" "$WORK/root" "$WORK/state" "$WORK/dirty" "$WORK/apply.log"
