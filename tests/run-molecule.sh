#!/usr/bin/env bash
# Runs `molecule test` for each scenario named in the arguments, MOLECULE_JOBS of them at a time.
# Scenarios share nothing (containers, networks and ephemeral directories are each scenario's own),
# and most of a scenario's time is spent waiting on apt, systemd and the network rather than on the
# CPU, so two at a time finish the suite well before one after the other does on two cores
# (docs/performance.md, "The test suite"). Each scenario's output goes to its own log, printed whole
# when the scenario fails; longer scenarios should be named first so that the last one to start is
# a short one.
set -uo pipefail

jobs=${MOLECULE_JOBS:-2}
# Molecule boxes and wraps its commands' output at the terminal's width, 80 columns in a log, which cut
# test names and failure messages in two; a log read after the run has room for whole lines.
export COLUMNS=${COLUMNS:-200}
logs=${MOLECULE_LOGS:-.cache/molecule-logs}
mkdir -p "$logs"

# One scenario (the script runs itself with --one for each); its report is printed under a lock so
# that two reports never interleave.
if [[ ${1:-} == --one ]]; then
    scenario=$2 log=$logs/$2.log
    if molecule test -s "$scenario" >"$log" 2>&1; then
        result="passed in $SECONDS s (log $log)"
    else
        result="FAILED in $SECONDS s; its log follows"
        echo "$scenario" >>"$logs/.failed"
    fi
    exec 9>>"$logs/.print"
    flock 9
    echo "=== molecule test -s $scenario: $result"
    if [[ $result == FAILED* ]]; then
        cat "$log"
        echo "=== end of the log of $scenario"
    fi
    exit 0
fi

rm -f "$logs/.failed"
printf '%s\n' "$@" | xargs -P "$jobs" -I{} "$0" --one {}
echo "molecule: $# scenarios in $SECONDS s, $jobs at a time"
if [[ -s $logs/.failed ]]; then
    # Repeated last, because a CI report may keep only the end of the output: the failed tests'
    # names and the failed tasks, each scenario's log above holding the rest.
    sort "$logs/.failed" | while read -r scenario; do
        echo "=== $scenario failed at:"
        sed 's/\x1b\[[0-9;]*m//g' "$logs/$scenario.log" | grep -aE '(FAILED|ERROR) [^ ]*tests/|fatal: \[|failed=[1-9]' | tail -n 20
    done
    echo "molecule scenarios failed: $(sort "$logs/.failed" | tr '\n' ' ')"
    exit 1
fi
