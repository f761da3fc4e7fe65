#!/bin/sh
# Collect this host's status and mail it with the job beside this script.
# Run by mailshot-status.service (every minute, from mailshot-status.timer)
# or by cron (crontab.txt). Extra arguments go to `mailshot run`.
#
# --restart: every run is a new status mail. Without it, the journal of the
# previous minute's run would say this recipient was already sent to, and
# mailshot would (rightly, for a newsletter) send nothing.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
load=$(cut -d ' ' -f 1-3 /proc/loadavg)
disk=$(df -P / | awk 'NR == 2 { print $5 }')
exec "${MAILSHOT:-mailshot}" run "$here/job.yaml" --restart --quiet \
    --var "host=$(uname -n)" --var "load=$load" --var "disk=$disk" "$@"
