#!/usr/bin/env bash
# A single-node Slurm cluster on this machine (for the dask-gateway Slurm backend and its tests).
#
# Run as root; idempotent. Installs the Debian packages slurm-wlm and munge if missing,
# makes a munge key if there is none, starts munged, writes /etc/slurm/slurm.conf for one
# node (this host's short name, its CPUs, RealMemory a little below its memory) in one
# default partition, starts slurmctld and slurmd as daemons with pid files, waits until
# the node is idle, then prints one line on stdout:
#     <partition> <node> <state> <cpus> <memory MB>
# If the daemons already run and answer with the same configuration, it changes nothing.
#     bash scripts/slurm.sh        start (or check)
#     bash scripts/slurm.sh stop   stop the daemons this script started (by pid file)
# Everything else goes to stderr. No systemd is needed: the package install starts no
# daemon here (policy-rc.d), so this script starts them itself.
#
# Choices:
# - SlurmUser=slurm (the package's system account): slurmctld needs no root, so it
#   drops to slurm; slurmd stays root (SlurmdUser=root), as it must to start jobs as
#   their owners. With PrivateData=jobs only root and SlurmUser see every job, so a
#   service that lists or cancels others' jobs (the dask gateway) runs as root.
# - ProctrackType=proctrack/cgroup where a cgroup v1 freezer hierarchy is mounted and
#   writable (as here: v1 controllers under /sys/fs/cgroup/*, no systemd), else
#   proctrack/linuxproc. With cgroup, every process of a job, even one that left the
#   job's process tree (setsid, double fork), is killed when the job ends or is
#   cancelled; linuxproc follows the process tree only and leaves those running.
#   cgroup/v2 is no option on this hybrid layout: slurmd 22.05 stops with "fatal:
#   Hybrid mode is not supported" (cgroup2 at /sys/fs/cgroup/unified has no controllers).
# - TaskPlugin=task/none: task/cgroup would move job processes into Slurm's own memory
#   and cpuset cgroups, out of the ones this machine's processes already sit in, to
#   enforce limits a test machine does not need. Memory is still a scheduled resource.
set -euo pipefail

NAME=slurm-datahavn
STATE=/var/lib/$NAME
LOGDIR=/var/log/$NAME
RUNDIR=/run/$NAME
CONFDIR=/etc/slurm
CONF=$CONFDIR/slurm.conf
CTLD_PID=$RUNDIR/slurmctld.pid
SLURMD_PID=$RUNDIR/slurmd.pid
MUNGE_PID=/run/munge/munged.pid
MUNGE_MARK=$RUNDIR/munged.started-here
PARTITION=debug
WAIT=60

log() { echo "slurm.sh: $*" >&2; }
die() { echo "slurm.sh: $*" >&2; exit 1; }
# The last error or fatal line a daemon wrote to its log since we started it (pmix
# "can not load" lines are harmless noise), for a failure message.
declare -A LOGSTART=()
mark_log() { LOGSTART[$1]=$(($(stat -c %s "$1" 2>/dev/null || echo 0) + 1)); }
last_error() {
    tail -c +"${LOGSTART[$1]:-1}" "$1" 2>/dev/null | grep -iE 'fatal|error' | grep -vi pmix \
        | tail -n 1 | cut -c1-200
}
# Start a daemon that forks into the background; wait until its pid file names it.
start_daemon() {
    local comm=$1 pidfile=$2 logfile=$3
    log "starting $comm"
    mark_log "$logfile"
    "$comm" -f "$CONF" >&2 || die "$comm did not start: $(last_error "$logfile") (see $logfile)"
    for _ in $(seq 1 50); do
        live_pid "$pidfile" "$comm" >/dev/null && return 0
        sleep 0.2
    done
    die "$comm exited: $(last_error "$logfile") (see $logfile)"
}

[ "$(id -u)" -eq 0 ] || die "must run as root"

# The pid in a pid file, if that process is alive and its name is $2. pids wrap, so a
# stale file may name some other process: the name check keeps us from killing it.
live_pid() {
    local file=$1 comm=$2 pid
    [ -s "$file" ] || return 1
    pid=$(tr -dc 0-9 <"$file" 2>/dev/null) || return 1
    is_proc "$pid" "$comm" || return 1
    echo "$pid"
}
is_proc() { [ -n "$1" ] && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ]; }

# Stop the process of a pid file: TERM, up to 10 s, then KILL (slurmd ignores TERM
# while it retries registering with a dead slurmctld).
stop_pid() {
    local file=$1 comm=$2 pid
    if pid=$(live_pid "$file" "$comm"); then
        log "stopping $comm (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            is_proc "$pid" "$comm" || break
            sleep 0.2
        done
        if is_proc "$pid" "$comm"; then
            log "$comm (pid $pid) ignored TERM for 10 s, killing it"
            kill -KILL "$pid" 2>/dev/null || true
            for _ in $(seq 1 25); do
                is_proc "$pid" "$comm" || break
                sleep 0.2
            done
        fi
    fi
    rm -f "$file"
}

if [ "${1:-}" = stop ]; then
    stop_pid "$SLURMD_PID" slurmd
    stop_pid "$CTLD_PID" slurmctld
    if [ -e "$MUNGE_MARK" ]; then
        stop_pid "$MUNGE_PID" munged
        rm -f "$MUNGE_MARK"
    fi
    log "stopped"
    exit 0
elif [ -n "${1:-}" ]; then
    die "unknown argument '$1' (use no argument to start, or 'stop')"
fi

# 1. Packages
need=()
for pkg in slurm-wlm munge; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    aptlog=$(mktemp)
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"; } >"$aptlog" 2>&1; then
        tail -n 20 "$aptlog" >&2
        rm -f "$aptlog"
        die "apt-get install ${need[*]} failed"
    fi
    rm -f "$aptlog"
fi
getent passwd slurm >/dev/null || die "the slurm account is missing (the slurm-wlm package makes it)"
getent passwd munge >/dev/null || die "the munge account is missing (the munge package makes it)"

# 2. munge: a key (the package makes one; a machine set up by hand may have none),
# then munged as the munge user. Its pid file must be in a directory munge owns.
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge
install -d -o munge -g munge -m 0700 /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    log "creating /etc/munge/munge.key"
    (umask 077 && dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none)
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key

munge_ok() { timeout 5 munge -n 2>/dev/null | timeout 5 unmunge >/dev/null 2>&1; }
install -d -m 0755 "$RUNDIR"
if ! live_pid "$MUNGE_PID" munged >/dev/null || ! munge_ok; then
    stop_pid "$MUNGE_PID" munged
    log "starting munged"
    mark_log /var/log/munge/munged.log
    runuser -u munge -- munged --pid-file="$MUNGE_PID" >&2 \
        || die "munged did not start: $(last_error /var/log/munge/munged.log) (see /var/log/munge/munged.log)"
    touch "$MUNGE_MARK"
    for _ in $(seq 1 50); do munge_ok && break; sleep 0.2; done
fi
munge_ok || die "munge does not answer (munge -n | unmunge fails; see /var/log/munge/munged.log)"

# 3. slurm.conf, from what slurmd sees of this machine.
host=$(hostname -s)
hw=$(timeout 10 slurmd -C 2>/dev/null | head -n 1) || true
field() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<"$hw"; }
cpus=$(field CPUs); sockets=$(field SocketsPerBoard); cores=$(field CoresPerSocket)
threads=$(field ThreadsPerCore); mem=$(field RealMemory)
[ -n "$cpus" ] || cpus=$(nproc)
[ -n "$mem" ] || mem=$(free -m | awk '/^Mem:/ { print $2 }')
# A little below the machine's memory (5%, at least 512 MB): slurmd drains a node that
# has less memory than slurm.conf says.
margin=$(( mem / 20 > 512 ? mem / 20 : 512 ))
realmem=$(( mem - margin ))
# Jobs that ask for no memory get this much per CPU, not the whole node (a quarter of a
# core's share, as up to 4 jobs share a core; see OverSubscribe below).
defmem=$(( realmem / cpus / 4 ))
topology=""
if [ -n "$sockets" ] && [ -n "$cores" ] && [ -n "$threads" ]; then
    topology=" Sockets=$sockets CoresPerSocket=$cores ThreadsPerCore=$threads"
fi

install -d -m 0755 "$CONFDIR"

# proctrack/cgroup if slurmd can make cgroups in a v1 freezer hierarchy (see the top).
freezer=/sys/fs/cgroup/freezer
proctrack=proctrack/linuxproc
if awk -v m="$freezer" '$2 == m && $3 == "cgroup" { f = 1 } END { exit !f }' /proc/mounts \
    && mkdir "$freezer/slurm-probe.$$" 2>/dev/null && rmdir "$freezer/slurm-probe.$$"; then
    proctrack=proctrack/cgroup
fi
CGCONF=$CONFDIR/cgroup.conf
cg_changed=0
if [ "$proctrack" = proctrack/cgroup ]; then
    cgtext='# Written by scripts/slurm.sh. Only proctrack/cgroup uses it (freezer); nothing is constrained.
CgroupPlugin=cgroup/v1
CgroupMountpoint=/sys/fs/cgroup
ConstrainCores=no
ConstrainRAMSpace=no
ConstrainSwapSpace=no
ConstrainDevices=no'
    if [ "$(cat "$CGCONF" 2>/dev/null)" != "$cgtext" ]; then
        log "writing $CGCONF"
        printf '%s\n' "$cgtext" >"$CGCONF"
        chmod 0644 "$CGCONF"
        cg_changed=1
    fi
elif [ -e "$CGCONF" ] && head -n 1 "$CGCONF" | grep -q 'scripts/slurm.sh'; then
    rm -f "$CGCONF"
    cg_changed=1
fi
install -d -o slurm -g slurm -m 0755 "$STATE" "$LOGDIR"
install -d -o slurm -g slurm -m 0700 "$STATE/ctld"
install -d -o root -g root -m 0755 "$STATE/d"

new=$(mktemp)
trap 'rm -f "$new"' EXIT
cat >"$new" <<EOF
# Written by scripts/slurm.sh: a single-node cluster. Changes here are overwritten.
ClusterName=datahavn
SlurmctldHost=$host(127.0.0.1)
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
ReturnToService=2

StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info

# Process tracking: cgroup (v1 freezer) where it works, else linuxproc; see the top of
# scripts/slurm.sh.
ProctrackType=$proctrack
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none

# Cores and memory are the consumable resources (CR_Memory alone is fatal with cons_tres).
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$defmem

# One account's squeue shows only its own jobs; root and SlurmUser see all.
PrivateData=jobs

NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus$topology RealMemory=$realmem State=UNKNOWN
# OverSubscribe=FORCE:4: up to 4 jobs share a core, so a dask scheduler and its workers
# (one core each) fit on a small machine.
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
EOF

changed=$cg_changed
if ! cmp -s "$new" "$CONF"; then
    log "writing $CONF"
    install -m 0644 "$new" "$CONF"
    changed=1
fi

# 4. Daemons. Running and answering with the same conf: leave them alone. Otherwise
# stop what is there and start again. Without -D each daemon forks into the background
# and writes its pid file itself.
ctld_ok() { live_pid "$CTLD_PID" slurmctld >/dev/null && timeout 5 scontrol ping 2>/dev/null | grep -q 'is UP'; }
node_state() { timeout 5 sinfo -h -n "$host" -o %t 2>/dev/null | head -n 1; }
slurmd_ok() {
    live_pid "$SLURMD_PID" slurmd >/dev/null || return 1
    case "$(node_state)" in idle*|mix*|alloc*|comp*) return 0 ;; *) return 1 ;; esac
}

if [ "$changed" = 1 ] || ! ctld_ok; then
    stop_pid "$SLURMD_PID" slurmd
    stop_pid "$CTLD_PID" slurmctld
fi
deadline=$((SECONDS + WAIT))
if ! live_pid "$CTLD_PID" slurmctld >/dev/null; then
    start_daemon slurmctld "$CTLD_PID" "$LOGDIR/slurmctld.log"
fi
until ctld_ok; do
    sleep 0.5
    live_pid "$CTLD_PID" slurmctld >/dev/null \
        || die "slurmctld exited: $(last_error "$LOGDIR/slurmctld.log") (see $LOGDIR/slurmctld.log)"
    [ "$SECONDS" -lt "$deadline" ] \
        || die "slurmctld does not answer scontrol ping after ${WAIT}s (see $LOGDIR/slurmctld.log)"
done

if [ "$changed" = 1 ] || ! live_pid "$SLURMD_PID" slurmd >/dev/null; then
    stop_pid "$SLURMD_PID" slurmd
    start_daemon slurmd "$SLURMD_PID" "$LOGDIR/slurmd.log"
fi

# 5. Wait until the node is idle (or busy with jobs from before).
state=""
while [ "$SECONDS" -lt "$deadline" ]; do
    if slurmd_ok; then
        state=ok
        break
    fi
    live_pid "$SLURMD_PID" slurmd >/dev/null \
        || die "slurmd exited: $(last_error "$LOGDIR/slurmd.log") (see $LOGDIR/slurmd.log)"
    # A node left down or drained by an earlier run: it is ours, bring it back.
    case "$(node_state)" in
        down*|drain*|drng*) timeout 5 scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    sleep 1
done
[ "$state" = ok ] || die "node $host is not idle after ${WAIT}s (state: $(node_state || true); see $LOGDIR/slurmd.log)"

summary=$(timeout 5 sinfo -h -n "$host" -o '%R %N %t %c %m' | head -n 1) || summary=""
[ -n "$summary" ] || die "sinfo does not answer"
echo "$summary"
