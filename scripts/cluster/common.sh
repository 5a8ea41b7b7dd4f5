# shellcheck shell=bash
# Shared helpers for the single-node Slurm / Grid Engine dev+CI clusters.
# Sourced by slurm-up, slurm-down, sge-up, sge-down, up, down.
#
# Everything the scripts create at run time (configs, logs, pid files, spool)
# lives under one directory so that a glance (or an `rm -rf`) covers it all.

MULETEER_CLUSTER_STATE=${MULETEER_CLUSTER_STATE:-/var/lib/muleteer-cluster}
# The TORQUE wrappers are software, not state: keep them where a non-root
# user (e.g. galaxy) can run them, outside /root and outside the state dir.
MULETEER_TORQUE_DIR=${MULETEER_TORQUE_DIR:-/opt/muleteer-cluster/torque}
MULETEER_TORQUE_BIN=${MULETEER_TORQUE_BIN:-$MULETEER_TORQUE_DIR/bin}
# Grid Engine's Debian packages hard-wire this root and cell.
SGE_ROOT=${SGE_ROOT:-/var/lib/gridengine}
SGE_CELL=${SGE_CELL:-default}
export MULETEER_CLUSTER_STATE MULETEER_TORQUE_DIR MULETEER_TORQUE_BIN SGE_ROOT SGE_CELL

# Package maintainer scripts must never stop to ask a question (CI has no stdin).
export DEBIAN_FRONTEND=noninteractive

LOG_TAG=${LOG_TAG:-cluster}

log() { printf '[%s %s] %s\n' "$(date +%H:%M:%S)" "$LOG_TAG" "$*" >&2; }

# die MESSAGE [LOGFILE...]: fail loudly, pointing at the files that explain why.
die() {
    local msg=$1; shift
    log "ERROR: $msg"
    local f
    for f in "$@"; do
        log "  see: $f"
        if [[ -s $f ]]; then
            tail -n 15 "$f" | sed 's/^/    | /' >&2
        fi
    done
    exit 1
}

require_root() {
    [[ $(id -u) -eq 0 ]] || die "must run as root (installs packages and starts daemons)"
}

# wait_for TIMEOUT_S DESCRIPTION CMD [ARGS...]
# Polls CMD until it succeeds. Bounded twice: by wall time and by attempt count,
# so a clock jump or a CMD that hangs briefly still cannot make it spin forever.
wait_for() {
    local timeout=$1 desc=$2; shift 2
    local deadline=$((SECONDS + timeout)) tries=0 max_tries=$((timeout * 10 + 10))
    while ((tries < max_tries)); do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        ((SECONDS >= deadline)) && break
        tries=$((tries + 1))
        sleep 0.2
    done
    log "timed out after ${timeout}s (${tries} tries) waiting for: $desc"
    return 1
}

# ---------------------------------------------------------------- pid files

# pid_of PIDFILE: the pid in PIDFILE (digits only), or nothing.
pid_of() {
    [[ -s $1 ]] || return 1
    local pid
    pid=$(head -n 1 "$1" 2>/dev/null) || return 1
    pid=${pid//[^0-9]/}
    [[ -n $pid ]] || return 1
    printf '%s\n' "$pid"
}

# pid_running PIDFILE COMM: true if PIDFILE names a live process called COMM.
# kill -0 alone is not enough: after a reboot the pid may belong to anything.
pid_running() {
    local pid comm
    pid=$(pid_of "$1") || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    [[ $comm == "$2" ]]
}

pid_gone() { ! kill -0 "$1" 2>/dev/null; }

# stop_pidfile PIDFILE COMM [TIMEOUT_S]: stop exactly the process the pid file
# names (SIGTERM, then SIGKILL if it outlives TIMEOUT_S), then remove the file.
stop_pidfile() {
    local f=$1 comm=$2 timeout=${3:-20} pid
    if ! pid_running "$f" "$comm"; then
        if [[ -e $f ]]; then
            log "$comm: not running (stale pid file $f removed)"
            rm -f "$f"
        else
            log "$comm: not running (no pid file $f)"
        fi
        return 0
    fi
    pid=$(pid_of "$f")
    log "$comm: stopping pid $pid"
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_for "$timeout" "$comm (pid $pid) to exit" pid_gone "$pid"; then
        log "$comm: still alive after ${timeout}s, sending SIGKILL to pid $pid"
        kill -KILL "$pid" 2>/dev/null || true
        wait_for 5 "$comm (pid $pid) to die" pid_gone "$pid" || die "$comm (pid $pid) would not die"
    fi
    rm -f "$f"
}

# ---------------------------------------------------------------- packages

# missing_pkgs PKG...: prints the packages that are not fully installed.
missing_pkgs() {
    local p
    for p in "$@"; do
        if [[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null) != installed ]]; then
            printf '%s\n' "$p"
        fi
    done
}

APT_LOG=$MULETEER_CLUSTER_STATE/log/apt.log
# Another process (the image, a developer) may hold the dpkg lock for a while.
APT_OPTS=(-y -q -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)

# apt_update_once: `apt-get update` at most once per hour across all scripts,
# and only ever called when something is actually missing.
apt_update_once() {
    local stamp=$MULETEER_CLUSTER_STATE/run/apt-updated
    mkdir -p "${stamp%/*}" "${APT_LOG%/*}"
    if [[ -e $stamp && -z $(find "$stamp" -mmin +60 2>/dev/null) ]]; then
        return 0
    fi
    log "apt-get update (log: $APT_LOG)"
    apt-get update "${APT_OPTS[@]}" >>"$APT_LOG" 2>&1 || die "apt-get update failed" "$APT_LOG"
    touch "$stamp"
}

# apt_install PKG...: install what is missing; a warm run costs one dpkg-query per package.
apt_install() {
    local missing=()
    mapfile -t missing < <(missing_pkgs "$@")
    ((${#missing[@]})) || return 0
    mkdir -p "${APT_LOG%/*}"
    apt_update_once
    log "apt-get install ${missing[*]} (log: $APT_LOG)"
    apt-get install --no-install-recommends "${APT_OPTS[@]}" "${missing[@]}" >>"$APT_LOG" 2>&1 \
        || die "apt-get install of: ${missing[*]} failed" "$APT_LOG"
}
