"""`FairseqTrainJob`: one task of a training job. Every task (one per GPU, or per
CPU process) runs `fairseq-train` with its rank's distributed settings; a job
that reaches its time limit or is preempted is requeued by submitit and resumes
from fairseq's `checkpoint_last.pt`, the only training state kept on disk.

Distributed initialisation: on SLURM, fairseq derives the rendezvous host from
SLURM_STEP_NODELIST, the rank from SLURM_PROCID and the device from SLURM_LOCALID
once `--distributed-port` and `--distributed-world-size` are given (with one task
per GPU, each task is one rank and does not spawn). The same path serves CPU
tasks with the gloo backend and legacy_ddp, whose pytorch_ddp would ask for GPU 0.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Optional

import submitit

from xlmr.slurm import fairseq_log

logger = logging.getLogger(__name__)

CPU_DISTRIBUTED = ["--cpu", "--distributed-backend", "gloo", "--ddp-backend", "legacy_ddp"]
# what a GPU without bf16 trains in instead: the same 16 bits, with fairseq's loss scaling
BF16_FALLBACK = {"--bf16": "--fp16", "--memory-efficient-bf16": "--memory-efficient-fp16"}


def fairseq_train_command() -> list[str]:
    """fairseq-train of this interpreter's environment, which the job's nodes share."""
    script = Path(sys.executable).with_name("fairseq-train")
    return [str(script)] if script.exists() else [sys.executable, "-m", "fairseq_cli.train"]


def _first_host(nodelist: str) -> str:
    hosts = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True)
    return hosts.stdout.split()[0]


def distributed_arguments(world_size: int, cpu: bool, env: dict) -> list[str]:
    """What each task adds to the command for its rank.

    One process: nothing. Locally: the world size, and fairseq spawns one process
    per GPU. On SLURM with GPUs: a port that all tasks derive alike from the job id;
    fairseq reads the rest from the SLURM environment. On SLURM with CPUs: an
    explicit TCP rendezvous and rank, since fairseq's SLURM path calls
    torch.cuda.set_device for every task but the first of a node.
    """
    if world_size <= 1:
        return []
    args = ["--distributed-world-size", str(world_size)]
    job_id = env.get("SLURM_JOB_ID")
    if job_id is None:
        return args
    port = str(10_000 + int(job_id) % 50_000)
    if not cpu:
        return args + ["--distributed-port", port]
    host = _first_host(env.get("SLURM_STEP_NODELIST") or env["SLURM_JOB_NODELIST"])
    return args + ["--distributed-init-method", f"tcp://{host}:{port}", "--distributed-rank", env["SLURM_PROCID"],
                   "--distributed-no-spawn"]


def without_unsupported_bf16(argv: list[str], lacks_bf16: bool) -> list[str]:
    """``argv`` with bf16 swapped for fp16 when this node's GPU has no bf16 (V100 and older):
    the recipes ask for bf16 "where the hardware has it", and only the node knows."""
    if not lacks_bf16 or not BF16_FALLBACK.keys() & set(argv):
        return argv
    logger.warning("this GPU has no bf16: training in fp16 instead (with loss scaling)")
    return [BF16_FALLBACK.get(a, a) for a in argv]


def gpu_lacks_bf16() -> bool:
    """A CUDA GPU is present and cannot train in bf16."""
    import torch  # on the compute node only: the submitting machine need not load it

    return torch.cuda.is_available() and not torch.cuda.is_bf16_supported()


def _ignore_usr2() -> None:
    # submitit's handler in the parent requeues on SIGUSR2; the trainer keeps training
    # until SLURM stops it, having written checkpoint_last.pt every --save-interval-updates
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


class FairseqTrainJob(submitit.helpers.Checkpointable):
    """Runs `fairseq-train ARGV` in one task; rank 0's output also goes to `log`.

    `world_size` is the number of processes of the whole job (nodes x tasks per node).
    """

    def __init__(self, argv: list[str], world_size: int, log: Path):
        self.argv = [str(a) for a in argv]
        self.world_size = world_size
        self.log = Path(log)

    def command(self, env: dict, lacks_bf16: bool) -> list[str]:
        """This task's fairseq-train command; `lacks_bf16`: this node's GPU cannot train in bf16."""
        cpu = "--cpu" in self.argv
        argv = without_unsupported_bf16(self.argv, lacks_bf16)
        return fairseq_train_command() + argv + distributed_arguments(self.world_size, cpu, env)

    def __call__(self) -> Path:
        job_id = os.environ.get("SLURM_JOB_ID")
        rank = int(os.environ.get("SLURM_PROCID", "0")) if job_id else 0
        logging.basicConfig(level=logging.INFO)
        cmd = self.command(dict(os.environ), gpu_lacks_bf16())
        log = self.log if rank == 0 else self.log.with_name(f"{self.log.stem}.rank{rank}.log")
        log.parent.mkdir(parents=True, exist_ok=True)
        logger.info("rank %d runs: %s", rank, " ".join(cmd))
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(log, "a", encoding="utf-8") as out:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    env=env, preexec_fn=_ignore_usr2)
            tail: list[str] = []
            for line in proc.stdout:
                out.write(line)
                out.flush()
                sys.stdout.write(line)
                tail = (tail + [line.rstrip()])[-20:]
        if proc.wait() != 0:
            # one line, the error last: submitit's report and `xlmr-train --wait` show a job's last line
            error = fairseq_log.last_failure(tail) or (tail[-1] if tail else "no output")
            raise RuntimeError(f"fairseq-train exited with {proc.returncode} on rank {rank} (log {log}): {error}")
        return self.log

    def checkpoint(self) -> submitit.helpers.DelayedSubmission:
        """Called by submitit at the time limit or on preemption: requeue the same job.
        fairseq then restores checkpoint_last.pt with its update count and its place
        in the epoch's batch order, so the run continues as if never stopped."""
        logger.warning("time limit or preemption: requeueing; training resumes from checkpoint_last.pt")
        return submitit.helpers.DelayedSubmission(self)
