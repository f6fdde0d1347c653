#!/usr/bin/env bash
# Shared by every script ftslm sends to the instance; rendered after the
# script's `readonly` inputs and before its own body. Needs SCRIPT_NAME and
# IDLE_SHUTDOWN_MINUTES from those inputs.
#
# Output protocol read by the laptop:
#   ftslm-step: <step> ok|skipped|failed   one line per step, in order
#   ftslm-run: s3://BUCKET/PREFIX/TIMESTAMP/   where a run was archived
#   ftslm: ...   notes (stdout);  ftslm: warning/error: ...   (stderr)
#
# Test hooks (never set on a real instance): FTSLM_RUN_DIR.
# shellcheck disable=SC2154  # inputs come from the rendered header
set -euo pipefail

# Which ftslm scripts are running now, one file per process, so that the last
# one to end (and only it) schedules the idle shutdown: a `cloud test` ending
# beside a `cloud train --background` must not stop the instance mid-training.
FTSLM_RUN_DIR="${FTSLM_RUN_DIR:-/run/ftslm}"
FTSLM_CURRENT_STEP=""
FTSLM_OTHERS=()

ftslm_note() { printf 'ftslm: %s\n' "$*"; }
ftslm_warn() { printf 'ftslm: warning: %s\n' "$*" >&2; }
ftslm_die() {
    printf 'ftslm: error: %s\n' "$*" >&2
    exit 1
}

# A step begins; if the script dies before ftslm_step marks it, the exit trap
# reports it as failed.
ftslm_begin() { FTSLM_CURRENT_STEP=$1; }
ftslm_step() {
    printf 'ftslm-step: %s %s\n' "$1" "$2"
    FTSLM_CURRENT_STEP=""
}

# Fills FTSLM_OTHERS with the other ftslm scripts still running ("name (pid N)"),
# forgetting those whose process is gone. With a name, only scripts of that name.
ftslm_running_others() {
    local only=${1:-} f pid name
    FTSLM_OTHERS=()
    for f in "$FTSLM_RUN_DIR"/active.*; do
        [[ -e $f ]] || continue
        pid=${f##*.}
        [[ $pid == "$$" ]] && continue
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$f"
            continue
        fi
        name=$(cat "$f" 2>/dev/null || true)
        if [[ -z $only || $name == "$only" ]]; then
            FTSLM_OTHERS+=("$name (pid $pid)")
        fi
    done
}

# The idle-shutdown rule: cancel a pending shutdown now (one scheduled by an
# earlier command would stop the instance under this one), schedule one at
# exit, whatever the exit, so a forgotten instance stops itself.
ftslm_start() {
    shutdown -c >/dev/null 2>&1 || true
    mkdir -p "$FTSLM_RUN_DIR"
    printf '%s\n' "$SCRIPT_NAME" >"$FTSLM_RUN_DIR/active.$$"
    trap ftslm_finish EXIT
    # Without these a signal ends bash without running the EXIT trap.
    trap 'exit 129' HUP
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# shellcheck disable=SC2329  # invoked by the EXIT trap
ftslm_finish() {
    local rc=$?
    trap - EXIT
    set +e
    if [[ -n $FTSLM_CURRENT_STEP && $rc -ne 0 ]]; then
        ftslm_step "$FTSLM_CURRENT_STEP" failed
    fi
    rm -f "$FTSLM_RUN_DIR/active.$$"
    ftslm_running_others
    if ((IDLE_SHUTDOWN_MINUTES == 0)); then
        ftslm_note "idle shutdown is off (aws.ec2.idle_shutdown_minutes = 0): the instance runs until stopped (ftslm cloud stop)"
    elif ((${#FTSLM_OTHERS[@]} > 0)); then
        ftslm_note "idle shutdown left to ${FTSLM_OTHERS[*]}, still running"
    elif shutdown -h "+$IDLE_SHUTDOWN_MINUTES"; then
        ftslm_note "the instance shuts down in $IDLE_SHUTDOWN_MINUTES minutes unless another ftslm command starts (ftslm cloud stop stops it now)"
    else
        ftslm_warn "could not schedule the idle shutdown (shutdown -h +$IDLE_SHUTDOWN_MINUTES failed): stop the instance with ftslm cloud stop"
    fi
    exit "$rc"
}
