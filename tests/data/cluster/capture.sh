#!/usr/bin/env bash
# Regenerate the scheduler-output fixtures in this folder from the live dev
# clusters (run scripts/cluster/up first). Takes ~2-3 minutes, most of it
# waiting for a job to hit its 1-minute time limit.
#
#   tests/data/cluster/capture.sh [python-with-drmaa]
#
# Every fixture is the raw stdout of one command (NAME.txt), its stderr when
# there was any (NAME.stderr), and one line in commands.tsv:
# file <TAB> exit code <TAB> command. jobs.tsv says which job id played which
# part. Job ids, times and paths differ from run to run; the formats do not.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
# shellcheck source=/dev/null
. "$ROOT/scripts/cluster/env.sh"
PY=${1:-/tmp/helper-venv/bin/python}
SQ_FMT='%i|%T|%r'
TB=$MULETEER_TORQUE_BIN

WORK=$(mktemp -d /tmp/capture-XXXXXX)
chmod 0755 "$WORK"
cd "$WORK"

rm -rf "$HERE/slurm" "$HERE/torque" "$HERE/sge"
mkdir -p "$HERE/slurm" "$HERE/torque" "$HERE/sge"
printf 'file\texit\tcommand\n' >"$HERE/commands.tsv"
printf 'role\tjob_id\n' >"$HERE/jobs.tsv"

log() { printf '[%s capture] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# cap DIR/NAME CMD...: run CMD, keep stdout/stderr/exit code (a failing
# command is a fixture too, not an error).
cap() {
    local name=$1; shift
    local rc=0
    "$@" >"$HERE/$name.txt" 2>"$HERE/$name.stderr" || rc=$?
    [[ -s $HERE/$name.stderr ]] || rm -f "$HERE/$name.stderr"
    # Paths to our bin dir are machine-specific: record the tool's short name.
    local cmd="$*"
    printf '%s.txt\t%s\t%s\n' "$name" "$rc" "${cmd//$TB\//}" >>"$HERE/commands.tsv"
}

job() { printf '%s\t%s\n' "$1" "$2" >>"$HERE/jobs.tsv"; }
state() { squeue -h -t all -j "$1" -o %T 2>/dev/null; }
# wait_state ID REGEX [SECONDS]: bounded poll of one job's state.
wait_state() {
    local id=$1 want=$2 limit=${3:-30} i
    for ((i = 0; i < limit * 5; i++)); do
        [[ $(state "$id") =~ ^($want)$ ]] && return 0
        sleep 0.2
    done
    log "job $id: wanted $want, is $(state "$id") after ${limit}s"
    return 1
}
sb() { sbatch --parsable -o "$WORK/%j.out" "$@"; }

# ------------------------------------------------------------------ Slurm jobs
log "submitting finished-state jobs"
cap slurm/sbatch-parsable sbatch --parsable -o "$WORK/%j.out" -J completed --wrap true
completed=$(<"$HERE/slurm/sbatch-parsable.txt")
failed=$(sb -J exit3 --wrap 'exit 3')
# Over its --mem: OUT_OF_MEMORY with task/cgroup (slurm-up picks it when the
# cgroup v1 memory controller is usable), else FAILED/JobLaunchFailure.
memkill=$(sb -J memkill --mem=50M --wrap "perl -e '\$x = \"a\" x (300 << 20); sleep 5'")
job completed "$completed"; job failed_exit3 "$failed"; job memory_killed "$memkill"
for id in "$completed" "$failed" "$memkill"; do
    wait_state "$id" 'COMPLETED|FAILED|CANCELLED|OUT_OF_MEMORY'
done

cancelled=$(sb -J cancelled --wrap 'sleep 300')
job cancelled "$cancelled"
wait_state "$cancelled" RUNNING
scancel "$cancelled"
wait_state "$cancelled" CANCELLED

log "filling both CPUs (a job with a 1-minute limit and a long one)"
timeout_id=$(sb -J timeout -t 0:01 --wrap 'sleep 300')
running=$(sb -J running --wrap 'sleep 600')
job timeout "$timeout_id"; job running "$running"
wait_state "$timeout_id" RUNNING
wait_state "$running" RUNNING
pend_res=$(sb -J pending-resources --wrap true)
pend_hold=$(sb -J pending-held --hold --wrap true)
pend_begin=$(sb -J pending-begin --begin=now+1hour --wrap true)
pend_dep=$(sb -J pending-dependency --dependency=afterok:"$running" --wrap true)
job pending_resources "$pend_res"; job pending_held "$pend_hold"
job pending_begin "$pend_begin"; job pending_dependency "$pend_dep"

printf '#!/bin/sh\necho hello from torque\n' >"$WORK/torque-job.sh"
cap torque/qsub "$TB/qsub" -N torque-job -l nodes=1:ppn=1,mem=100mb,walltime=00:05:00 -j oe -o "$WORK/torque-job.out" "$WORK/torque-job.sh"
tq=$(tr -d '[:space:]' <"$HERE/torque/qsub.txt")
job torque_queued_then_completed "$tq"
sleep 2 # let the scheduler give each pending job its reason

all_ids="$completed,$failed,$memkill,$cancelled,$timeout_id,$running,$pend_res,$pend_hold,$pend_begin,$pend_dep,$tq"
log "snapshot 1: running + pending + finished"
# Without -t all, squeue -j hides finished jobs even while scontrol still has them.
cap slurm/squeue-jobs squeue -h -o "$SQ_FMT" -j "$all_ids"
cap slurm/squeue-jobs-t-all squeue -h -t all -o "$SQ_FMT" -j "$all_ids"
cap slurm/squeue-all squeue -h -t all -o "$SQ_FMT"
cap slurm/squeue-default squeue
cap slurm/squeue-unknown-id squeue -h -o "$SQ_FMT" -j 999999
cap slurm/squeue-t-all-unknown-id squeue -h -t all -o "$SQ_FMT" -j 999999
cap slurm/squeue-known-and-unknown-ids squeue -h -o "$SQ_FMT" -j "$completed,999999"
cap slurm/squeue-t-all-known-and-unknown-ids squeue -h -t all -o "$SQ_FMT" -j "$completed,$running,999999"
for pair in completed:completed failed:failed-exit3 memkill:memory-killed cancelled:cancelled \
    running:running pend_res:pending-resources pend_hold:pending-held pend_begin:pending-begin \
    pend_dep:pending-dependency; do
    var=${pair%%:*}
    cap "slurm/scontrol-show-job-${pair#*:}" scontrol show job "${!var}"
done
cap slurm/scontrol-oneliner-jobs scontrol -o show job "$completed"
for id in "$failed" "$memkill" "$cancelled" "$running" "$pend_res"; do
    scontrol -o show job "$id" >>"$HERE/slurm/scontrol-oneliner-jobs.txt"
done
cap slurm/scontrol-show-job-unknown scontrol show job 999999
cap slurm/sacct-without-slurmdbd sacct -j "$completed"

cap torque/qstat "$TB/qstat"
cap torque/qstat-ids "$TB/qstat" "$tq" "$running" "$completed"
cap torque/qstat-f-queued "$TB/qstat" -f "$tq"
cap torque/qstat-f-running "$TB/qstat" -f "$running"
cap torque/qstat-f-completed "$TB/qstat" -f "$completed"
cap torque/qstat-f-failed-exit3 "$TB/qstat" -f "$failed"
cap torque/qstat-unknown-id "$TB/qstat" 999999
cap torque/qstat-f-unknown-id "$TB/qstat" -f 999999
cap torque/qdel-finished "$TB/qdel" "$completed"
cap torque/qdel-unknown-id "$TB/qdel" 999999

log "waiting (up to 3 min) for job $timeout_id to hit its time limit"
wait_state "$timeout_id" TIMEOUT 180
wait_state "$tq" COMPLETED 60
wait_state "$pend_res" COMPLETED 60
log "snapshot 2: after the timeout"
cap slurm/scontrol-show-job-timeout scontrol show job "$timeout_id"
scontrol -o show job "$timeout_id" >>"$HERE/slurm/scontrol-oneliner-jobs.txt"
cap torque/qstat-after "$TB/qstat"
cap torque/qstat-f-completed-torque-job "$TB/qstat" -f "$tq"
cap torque/qstat-f-timeout "$TB/qstat" -f "$timeout_id"
cp "$WORK/torque-job.out" "$HERE/torque/torque-job-output.txt"

# The running job's own qdel, while it still runs.
cap torque/qdel-running "$TB/qdel" "$running"
wait_state "$running" CANCELLED
scancel "$pend_hold" "$pend_begin" "$pend_dep" 2>/dev/null || true
for id in "$pend_hold" "$pend_begin" "$pend_dep"; do wait_state "$id" 'CANCELLED|COMPLETED'; done
cap slurm/squeue-all-final squeue -h -t all -o "$SQ_FMT"
cap slurm/squeue-jobs-t-all-final squeue -h -t all -o "$SQ_FMT" -j "$all_ids"
# jobcomp/filetxt: one line per finished job, with ExitCode (no slurmdbd needed).
grep -E "JobId=($(tr , '|' <<<"$all_ids")) " "$MULETEER_CLUSTER_STATE/slurm/log/jobcomp.txt" \
    >"$HERE/slurm/jobcomp.txt" || true
printf 'slurm/jobcomp.txt\t0\tgrep our job ids in %s\n' "JobCompLoc" >>"$HERE/commands.tsv"

# ------------------------------------------------------------------ Grid Engine
log "Grid Engine: DRMAA smoke test (~15 s)"
cap sge/drmaa-smoke "$PY" "$ROOT/scripts/cluster/drmaa-smoke.py"
sed -i '/^# re-exec/d' "$HERE/sge/drmaa-smoke.txt"
[[ -s $HERE/sge/drmaa-smoke.stderr ]] || rm -f "$HERE/sge/drmaa-smoke.stderr"
id=$(/usr/bin/qsub -terse -b y -o /dev/null -e /dev/null /bin/sleep 5)
cap sge/qsub-sync-false /usr/bin/qsub -sync y -b y -o /dev/null -e /dev/null /bin/false
cap sge/qstat-j-running /usr/bin/qstat -j "$id"
cap sge/qstat /usr/bin/qstat
cap sge/qstat-xml /usr/bin/qstat -xml
cap sge/qstat-unknown-id /usr/bin/qstat -j 999999

rm -rf "$WORK"
log "fixtures written under $HERE"
