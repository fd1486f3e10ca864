#!/bin/bash
# A one-node SLURM cluster on localhost for the project's tests, in its own state dir.
#   scripts/slurm_local.sh up   [STATE_DIR]   # install (apt, once), start munged/slurmctld/slurmd, wait for idle
#   scripts/slurm_local.sh down [STATE_DIR]   # stop exactly the daemons `up` started (by their pidfiles), wipe state
# Then: export SLURM_CONF=STATE_DIR/slurm.conf PATH=STATE_DIR/bin:$PATH (sacct stand-in for submitit).
# Everything (config, keys, sockets, spool, logs, pidfiles) lives in STATE_DIR: nothing under /etc is touched,
# daemons bind 127.0.0.1 on their own ports, so a real cluster on the same host is left alone.
# Needs root (Debian slurm-wlm 22.05 + munge). Based on ../shared/tools/slurm/up.sh.
set -euo pipefail
ACTION=${1:?usage: slurm_local.sh up|down [STATE_DIR]}
STATE=$(realpath -m "${2:-/tmp/unet-pipeline-slurm}")
CTLD_PORT=${SLURM_LOCAL_CTLD_PORT:-6917}
SLURMD_PORT=${SLURM_LOCAL_SLURMD_PORT:-6918}

down() {
  [ -f "$STATE/slurm.conf" ] && SLURM_CONF="$STATE/slurm.conf" scancel --user="$(id -un)" 2>/dev/null || true
  for pf in "$STATE/slurmd.pid" "$STATE/slurmctld.pid" "$STATE/munge/munged.pid"; do
    [ -s "$pf" ] || continue
    pid=$(cat "$pf"); kill "$pid" 2>/dev/null || true
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pf"
  done
  rm -rf "$STATE"
}

up() {
  if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
  fi
  down
  mkdir -p "$STATE"/{munge,spool/ctld,spool/d,bin}
  chown munge:munge "$STATE/munge" && chmod 755 "$STATE/munge" "$STATE"
  mungekey -c -k "$STATE/munge/munge.key" && chown munge:munge "$STATE/munge/munge.key" && chmod 400 "$STATE/munge/munge.key"
  runuser -u munge -- munged --key-file="$STATE/munge/munge.key" --socket="$STATE/munge/munge.socket" \
    --pid-file="$STATE/munge/munged.pid" --log-file="$STATE/munge/munged.log" --seed-file="$STATE/munge/munged.seed"
  munge -n -S "$STATE/munge/munge.socket" | unmunge -S "$STATE/munge/munge.socket" >/dev/null

  local ncpu mem
  ncpu=$(nproc); mem=$(( $(awk '/MemTotal/{print $2}' /proc/meminfo) / 1024 * 8 / 10 ))
  cat > "$STATE/slurm.conf" <<CONF
ClusterName=unetlocal
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$STATE/munge/munge.socket
CredType=cred/munge
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MailProg=/bin/true
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
MinJobAge=3600
KillWait=5
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$ncpu RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF

  # sacct stand-in for submitit: accounting (slurmdbd) cannot be bound to 127.0.0.1 only. Ended jobs stay in
  # slurmctld for MinJobAge, so their state is reported at once. A pending array task that is cancelled vanishes
  # without a record, and submitit would wait on it forever: the stand-in remembers every task it has reported
  # and reports one that vanished as CANCELLED, so the sweep fails fast instead of hanging.
  cat > "$STATE/bin/sacct" <<'SHIM'
#!/usr/bin/env python3
import subprocess, sys
from pathlib import Path

seen_dir = Path(__file__).resolve().parent.parent / "sacct-seen"
seen_dir.mkdir(exist_ok=True)
args, jobs = sys.argv[1:], []
for i, arg in enumerate(args):
    if arg == "-j":
        jobs.append(args[i + 1])


def expand(spec):
    for part in spec.split("%")[0].split(","):
        low, _, high = part.partition("-")
        yield from map(str, range(int(low), int(high or low) + 1))


print("JobID|State|NodeList")
for job in jobs:
    out = subprocess.run(["scontrol", "-o", "show", "job", job], capture_output=True, text=True).stdout
    now = {}
    for line in out.splitlines():
        kv = dict(tok.split("=", 1) for tok in line.split() if "=" in tok)
        if "ArrayTaskId" in kv:
            for task in expand(kv["ArrayTaskId"]):
                now[f"{kv['ArrayJobId']}_{task}"] = (kv["JobState"], kv.get("NodeList", ""))
        elif "JobId" in kv:
            now[kv["JobId"]] = (kv["JobState"], kv.get("NodeList", ""))
    seen_file = seen_dir / job.split("_")[0]
    seen = set(seen_file.read_text().split()) if seen_file.exists() else set()
    for vanished in sorted(seen - set(now)):
        now[vanished] = ("CANCELLED", "")
    seen_file.write_text("\n".join(sorted(seen | set(now))))
    for job_id, (state, nodes) in now.items():
        print(f"{job_id}|{state}|{nodes}")
SHIM
  chmod +x "$STATE/bin/sacct"

  export SLURM_CONF="$STATE/slurm.conf"
  slurmctld -f "$SLURM_CONF"
  slurmd -f "$SLURM_CONF" -N localhost
  for _ in $(seq 120); do [ "$(sinfo -h -o %T 2>/dev/null)" = idle ] && break; sleep 0.5; done
  [ "$(sinfo -h -o %T)" = idle ] || { echo "slurm did not come up; see $STATE/*.log" >&2; exit 1; }
  srun -t 1 true
  echo "export SLURM_CONF=$STATE/slurm.conf PATH=$STATE/bin:\$PATH"
}

case "$ACTION" in
  up) up ;;
  down) down ;;
  *) echo "usage: slurm_local.sh up|down [STATE_DIR]" >&2; exit 2 ;;
esac
