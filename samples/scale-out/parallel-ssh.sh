#!/bin/sh
# One mailshot job on N machines with GNU parallel over ssh. Each machine
# runs one shard, `mailshot run job.yaml --shard I/N`, in a job folder every
# machine sees at the same path (NFS), with its own journal and report.
# Rerunning this script reruns only the shards that did not finish with
# exit 0 (--joblog/--resume-failed); each resumes from its own journal.
#
#   ./parallel-ssh.sh /srv/mail/newsletter host1 host2 host3 host4
#   mailshot report /srv/mail/newsletter/job.yaml   # merges the shards
#
# A host of `:` is GNU parallel's name for this machine: `./parallel-ssh.sh
# "$PWD" : : : :` runs the four shards here, one after another, as a trial.
set -eu
dir=$1
shift
n=$#
hosts=$(printf '1/%s,' "$@")
seq 0 $((n - 1)) | parallel --jobs 1 --sshlogin "${hosts%,}" \
    --joblog "$dir/parallel.joblog" --resume-failed --tag \
    "cd $dir && mailshot run job.yaml --shard {}/$n --quiet"
