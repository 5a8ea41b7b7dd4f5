#!/usr/bin/env bash
# Start Muleteer: installs what it needs into .venv, checks the configuration,
# creates/migrates the database, then runs `uwsgi --yaml galaxy.yml`.
#
#   ./run.sh             in the foreground (Ctrl-C stops it)
#   ./run.sh --daemon    in the background; log in database/uwsgi.log
#   ./run.sh --stop      stop the background server (by its pid file)
#   ./run.sh --restart   reload the code without refusing a request or losing a job
#   ./run.sh --status    is it running, and its handlers
#   ./run.sh --reset-password EMAIL   a new password for a user (the first admin's, say)
#
# The first start prints the first admin's login as its last line, once the server answers.
# MULETEER_CONFIG picks another galaxy.yml (default: ./galaxy.yml).
set -euo pipefail
# Everything created from here on (database/, the log, uWSGI's sockets and pid file, job
# directories) is the server account's alone; galaxy.yml's uwsgi: umask keeps it so.
umask 077
cd "$(dirname "$0")"
export MULETEER_CONFIG=${MULETEER_CONFIG:-galaxy.yml}
VENV=${MULETEER_VENV:-.venv}
# Grid Engine's libdrmaa loads libjemalloc, which needs static TLS that glibc reserves
# only when told at process start: set it for the drmaa runner.
if [ -n "${DRMAA_LIBRARY_PATH:-}" ] && [[ "${GLIBC_TUNABLES:-}" != *optional_static_tls* ]]; then
    export GLIBC_TUNABLES="${GLIBC_TUNABLES:+$GLIBC_TUNABLES:}glibc.rtld.optional_static_tls=16384"
fi
LOGFILE=${MULETEER_LOG:-database/uwsgi.log}

# The pid file and address are uWSGI settings: read them from the uwsgi: section.
uwsgi_setting() {
    awk -v key="$1" '/^uwsgi:/{s=1;next} /^[^ #]/{s=0} s && $1==key":"{print $2; exit}' "$MULETEER_CONFIG"
}
PIDFILE=$(uwsgi_setting pidfile); PIDFILE=${PIDFILE:-database/uwsgi.pid}
ADDRESS=$(uwsgi_setting http); ADDRESS=${ADDRESS:-127.0.0.1:8080}

# The pid in the pid file, if that process is this server's uWSGI master. A pid file left
# behind by a crash (or a kill -9) may name a pid the system has since given to another
# process: that one is neither reported as the server nor ever signalled.
running_pid() {
    local pid
    pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
    [[ "$pid" =~ ^[1-9][0-9]{0,9}$ ]] && is_our_master "$pid" && echo "$pid"
}

# The executable of process $1, as /proc shows it (also after a reinstall replaced it).
process_exe() {
    local exe
    exe=$(readlink "/proc/$1/exe" 2>/dev/null) || return 1
    echo "${exe% (deleted)}"
}

# Process $1 runs this checkout's $VENV/bin/uwsgi, was started with `--yaml` naming this
# very configuration file (the same file, relative paths taken from the process's own
# directory), and its parent is not such a uWSGI (web workers and mules carry their
# master's command line too).
is_our_master() {
    local pid=$1 uwsgi args config i stat ppid
    uwsgi=$(readlink -f "$VENV/bin/uwsgi" 2>/dev/null) || return 1
    [ -n "$uwsgi" ] && [ "$(process_exe "$pid")" = "$uwsgi" ] || return 1
    mapfile -d '' args 2>/dev/null < "/proc/$pid/cmdline" || return 1
    config=
    for ((i = 0; i + 1 < ${#args[@]}; i++)); do
        [ "${args[i]}" = --yaml ] && config=${args[i + 1]}
    done
    [ -n "$config" ] || return 1
    [[ "$config" = /* ]] || config="/proc/$pid/cwd/$config"
    [ "$config" -ef "$MULETEER_CONFIG" ] || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    stat=${stat##*) }            # "pid (comm) state ppid ...": from the state on
    ppid=${stat#* }; ppid=${ppid%% *}
    [ "$(process_exe "$ppid")" != "$uwsgi" ]
}

# Says so when the pid file names a process that is not this server (and leaves it alone).
note_stale_pidfile() {
    local pid
    pid=$(cat "$PIDFILE" 2>/dev/null) || return 0
    [ -n "$pid" ] || return 0
    echo "muleteer: $PIDFILE names pid $pid, which is not this server's uWSGI master" \
         "(a stale pid file): ignored, nothing signalled" >&2
}

prepare() {
    scripts/setup-venv requirements.txt
    mkdir -p database "$(dirname "$PIDFILE")" "$(dirname "$LOGFILE")"
    "$VENV/bin/python" -m check "$MULETEER_CONFIG"
}

# The first admin's login. The configuration check creates the first admin of a fresh
# database before uWSGI starts (app/accounts.py, ensure_first_admin) and writes how to log
# in to the private file MULETEER_FIRST_ADMIN_NOTE names, instead of printing it among
# uWSGI's ~35 start-up lines; it is printed once the server answers (run.sh's last line)
# and appended to the server's log.
first_admin_note() {
    mkdir -p "$(dirname "$PIDFILE")"
    NOTE=$(mktemp "$(dirname "$PIDFILE")/first-admin.XXXXXX")
    export MULETEER_FIRST_ADMIN_NOTE=$NOTE
    trap 'rm -f "$NOTE"' EXIT
}

# Prints the first admin's login if this start made one, appends it to the log file $1 if
# given, and removes the note.
announce_first_admin() {
    if [ -s "$NOTE" ]; then
        cat "$NOTE"
        if [ -n "${1:-}" ]; then cat "$NOTE" >> "$1"; fi
    fi
    rm -f "$NOTE"
}

# Foreground mode, detached from run.sh (so that the uWSGI master run.sh becomes never
# reaps it): once the master (pid $1) answers, says where, then the first admin's login.
announce_when_up() {
    local master=$1
    for _ in $(seq 1 240); do
        kill -0 "$master" 2>/dev/null || break
        if curl -fsS -o /dev/null "http://$ADDRESS/api/version" 2>/dev/null; then
            sleep 1  # the mules' start-up lines come just after the first web worker's
            echo "muleteer: serving on http://$ADDRESS (pid $master; Ctrl-C stops it)"
            break
        fi
        sleep 0.5
    done
    announce_first_admin
}

wait_until_up() {
    for _ in $(seq 1 120); do
        if curl -fsS -o /dev/null "http://$ADDRESS/api/version" 2>/dev/null; then
            echo "muleteer: serving on http://$ADDRESS (pid $(running_pid), log $LOGFILE)"
            return 0
        fi
        if ! running_pid >/dev/null && [ "${1:-}" = daemon ] && [ -f "$PIDFILE" ]; then break; fi
        sleep 0.5
    done
    echo "muleteer: did not come up within 60 s; see $LOGFILE" >&2
    return 1
}

case "${1:-}" in
    ""|--foreground)
        if pid=$(running_pid); then echo "muleteer: already running (pid $pid)" >&2; exit 1; fi
        first_admin_note
        prepare
        unset MULETEER_FIRST_ADMIN_NOTE  # for the check only, not for uWSGI
        ( announce_when_up $$ & )  # $$ is the uWSGI master after the exec
        exec "$VENV/bin/uwsgi" --yaml "$MULETEER_CONFIG"
        ;;
    --daemon)
        if pid=$(running_pid); then echo "muleteer: already running (pid $pid)"; exit 0; fi
        first_admin_note
        prepare
        unset MULETEER_FIRST_ADMIN_NOTE
        "$VENV/bin/uwsgi" --yaml "$MULETEER_CONFIG" --daemonize2 "$LOGFILE"
        status=0
        wait_until_up daemon || status=$?
        announce_first_admin "$LOGFILE"  # the last line, up or not: the login is not lost
        exit "$status"
        ;;
    --stop)
        if ! pid=$(running_pid); then note_stale_pidfile; echo "muleteer: not running"; exit 0; fi
        kill -TERM "$pid"
        for _ in $(seq 1 60); do
            is_our_master "$pid" || { echo "muleteer: stopped (pid $pid)"; exit 0; }
            sleep 0.5
        done
        echo "muleteer: pid $pid still running after 30 s; see $LOGFILE" >&2
        exit 1
        ;;
    --restart)
        if ! pid=$(running_pid); then note_stale_pidfile; echo "muleteer: not running" >&2; exit 1; fi
        prepare  # installs and migrates first; a bad configuration stops here, server untouched
        fifo=$(uwsgi_setting master-fifo)
        mules=$(uwsgi_setting touch-mules-reload)
        [ -p "$fifo" ] || { echo "muleteer: no master-fifo in $MULETEER_CONFIG" >&2; exit 1; }
        echo c > "$fifo"          # chain reload: one web worker at a time
        [ -n "$mules" ] && touch "$mules"
        echo "muleteer: restarting (pid $pid): web workers one by one, then the mules"
        ;;
    --status)
        if pid=$(running_pid); then
            echo "muleteer: running (pid $pid) on http://$ADDRESS"
            "$VENV/bin/python" -m check "$MULETEER_CONFIG" --handlers 2>/dev/null || true
        else
            note_stale_pidfile; echo "muleteer: not running"; exit 3
        fi
        ;;
    --reset-password)
        # A new password for an existing user, printed once; their browser sessions end.
        # (.venv/bin/python -m app.users set-password EMAIL --stdin reads one instead.)
        if [ -z "${2:-}" ]; then echo "usage: $0 --reset-password EMAIL" >&2; exit 2; fi
        if [ ! -x "$VENV/bin/python" ]; then echo "muleteer: no $VENV yet: run ./run.sh first" >&2; exit 1; fi
        exec "$VENV/bin/python" -m app.users set-password "$2" --config "$MULETEER_CONFIG"
        ;;
    -h|--help)
        sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
        ;;
    *)
        echo "usage: $0 [--daemon | --stop | --restart | --status | --reset-password EMAIL | --help]" >&2; exit 2
        ;;
esac
