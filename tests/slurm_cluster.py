"""A real one-node SLURM cluster for the tests: Debian's slurm-wlm and munge,
installed when missing, configured under a temporary directory and stopped afterwards.

The cluster is private to the test session: its own munge key and socket, its own
ports and its own state directories, so it neither needs nor disturbs a system
SLURM. Test modules import the `slurm_cluster` fixture from here (no
`pytest_plugins`); its value is the environment (SLURM_CONF) that clients need,
also exported to `os.environ` while it runs so that submitit's sbatch finds it.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator, Optional

import pytest

PACKAGES = ("slurm-wlm", "munge")
DAEMONS = ("munged", "slurmctld", "slurmd")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def install_slurm() -> Optional[str]:
    """Install the packages when a daemon is missing; the reason SLURM cannot be had (not
    root), or None. A failed install as root raises: it must not pass as a skip."""
    if all(shutil.which(d) or Path("/usr/sbin", d).exists() for d in DAEMONS):
        return None
    if os.geteuid() != 0:
        return "SLURM is not installed and the tests are not running as root, so it cannot be installed"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *PACKAGES]):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:  # as root this is a failure to report, not a reason to skip
            raise RuntimeError(f"`{' '.join(cmd)}` failed: {proc.stderr[-2000:]}")
    return None


def _real_memory_mb() -> int:
    """What slurmd may promise: 80% of the machine, leaving room for the other processes."""
    with open("/proc/meminfo") as f:
        total_kb = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
    return int(total_kb / 1024 * 0.8)


def write_config(root: Path) -> Path:
    """slurm.conf for this host alone: every core, 80% of the memory, CPU jobs."""
    host = socket.gethostname().split(".")[0]
    for sub in ("state", "spool", "log"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    conf = root / "slurm.conf"
    conf.write_text(f"""\
ClusterName=xlmrtest
SlurmctldHost={host}
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={root / 'munge.socket'}
CryptoType=crypto/munge
StateSaveLocation={root / 'state'}
SlurmdSpoolDir={root / 'spool'}
SlurmctldPidFile={root / 'slurmctld.pid'}
SlurmdPidFile={root / 'slurmd.pid'}
SlurmctldLogFile={root / 'log' / 'slurmctld.log'}
SlurmdLogFile={root / 'log' / 'slurmd.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=1024
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
MpiDefault=none
ReturnToService=2
JobRequeue=1
KillWait=5
MinJobAge=600
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
NodeName={host} CPUs={os.cpu_count()} RealMemory={_real_memory_mb()} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
""")
    return conf


class Cluster:
    """The daemons of one test session, started from a config under `root`."""

    def __init__(self, root: Path):
        self.root = root
        self.conf = write_config(root)
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))

    def start(self) -> None:
        key = self.root / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        self._run(["munged", "--force", f"--socket={self.root / 'munge.socket'}", f"--key-file={key}",
                   f"--pid-file={self.root / 'munged.pid'}", f"--log-file={self.root / 'log' / 'munged.log'}",
                   f"--seed-file={self.root / 'munged.seed'}"])
        self._run(["slurmctld", "-f", str(self.conf)])
        self._run(["slurmd", "-f", str(self.conf)])
        deadline = time.time() + 60
        while time.time() < deadline:
            state = subprocess.run(["sinfo", "-h", "-o", "%T"], env=self.env, capture_output=True, text=True)
            if state.stdout.strip() == "idle":
                return
            time.sleep(0.5)
        raise RuntimeError(f"the node did not come up: sinfo says {state.stdout!r} {state.stderr!r}\n{self.logs()}")

    def _run(self, cmd: list[str]) -> None:
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed to start: {proc.stderr}\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text()[-3000:]}" for p in sorted((self.root / "log").glob("*.log")))

    def stop(self) -> None:
        """Cancel what is left, then stop the daemons this session started, by their pid."""
        subprocess.run(["scancel", "--user", "root"], env=self.env, capture_output=True)
        for name in ("slurmd", "slurmctld", "munged"):
            pid_file = self.root / f"{name}.pid"
            if not pid_file.exists():
                continue
            pid = int(pid_file.read_text().split()[0])
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory) -> Iterator[dict]:
    """A running one-node cluster; skips (saying why) only when SLURM cannot be installed."""
    reason = install_slurm()
    if reason is not None:
        pytest.skip(f"no SLURM cluster for these tests: {reason}")
    cluster = Cluster(tmp_path_factory.mktemp("slurm"))
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        cluster.start()
        yield cluster.env
    finally:
        cluster.stop()
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
