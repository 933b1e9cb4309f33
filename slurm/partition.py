"""What the nodes of a SLURM partition offer, what a job asks of one node, and which flag to
change when no node can hold it.

`sinfo -N` lists every node of a partition whatever its state (a node down today may serve the
job tomorrow), so a request that no listed node can hold will never start. Our commands check
their request against it before submitting, and `retrying_array.wait` again, from the job as
SLURM holds it, when a pending reason says the job may never start.
"""
from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from typing import Optional

_MB = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 ** 2}


def _mb(text: str) -> int:
    """SLURM's '16G', '1024M', '19284' (MB) as MB; 0 when there is no number."""
    match = re.match(r"(\d+(?:\.\d+)?)([KMGT]?)", text)
    return int(float(match.group(1)) * _MB[match.group(2) or "M"]) if match else 0


def _gpus(gres: str) -> int:
    """GPUs in a gres or TRES string: 'gpu:8', 'gpu:a100:4(S:0-1)', 'gres:gpu:8', 'gres/gpu=2'."""
    return sum(int(n) for n in re.findall(r"gpu(?:[:/][A-Za-z]\w*)?[:=](\d+)", gres))


@dataclass(frozen=True)
class Node:
    name: str
    cpus: int
    mem_mb: int
    gpus: int


@dataclass(frozen=True)
class Offer:
    """The nodes of one partition."""

    partition: str
    nodes: tuple[Node, ...]

    @property
    def cpus(self) -> int:
        return max(n.cpus for n in self.nodes)

    @property
    def mem_mb(self) -> int:
        return max(n.mem_mb for n in self.nodes)

    @property
    def gpus(self) -> int:
        return max(n.gpus for n in self.nodes)

    def __str__(self) -> str:
        return (f"partition {self.partition} has {len(self.nodes)} node(s), at most {self.cpus} CPUs, "
                f"{self.mem_mb / 1024:.1f} GB of memory and {self.gpus} GPUs per node")


@dataclass(frozen=True)
class Request:
    """What a job asks: `nodes` nodes, each running `tasks_per_node` tasks."""

    nodes: int = 1
    tasks_per_node: int = 1
    cpus_per_task: int = 1
    mem_mb: int = 0  # per node; 0: the partition's default
    gpus_per_node: int = 0

    @property
    def cpus_per_node(self) -> int:
        return self.tasks_per_node * self.cpus_per_task

    def fits(self, node: Node) -> bool:
        return self.cpus_per_node <= node.cpus and self.mem_mb <= node.mem_mb and self.gpus_per_node <= node.gpus

    def __str__(self) -> str:
        mem = f"{self.mem_mb / 1024:g} GB" if self.mem_mb else "the default memory"
        return (f"{self.cpus_per_task} CPUs per task x {self.tasks_per_node} task(s) per node "
                f"= {self.cpus_per_node} CPUs, {mem} and {self.gpus_per_node} GPUs per node, on {self.nodes} node(s)")


def offer(partition: Optional[str]) -> Optional[Offer]:
    """The nodes of `partition` (None: the cluster's default one), or None when sinfo does not answer."""
    try:
        proc = subprocess.run(["sinfo", "-h", "-N", "-o", "%N|%P|%c|%m|%G"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    nodes: dict[str, Node] = {}
    name = partition
    for line in proc.stdout.splitlines() if proc.returncode == 0 else []:
        fields = line.split("|")
        if len(fields) != 5:
            continue
        node, part, cpus, mem, gres = fields
        if part.rstrip("*") == partition or (partition is None and part.endswith("*")):
            name = part.rstrip("*")
            nodes[node] = Node(node, int(re.match(r"\d*", cpus).group() or 0), _mb(mem), _gpus(gres))
    return Offer(name, tuple(nodes.values())) if nodes and name else None


def job_request(job_id: str) -> Optional[tuple[Request, str]]:
    """What the job asks and of which partition, as `scontrol show job` tells it; None once SLURM forgot it."""
    proc = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True)
    if proc.returncode != 0 or "=" not in proc.stdout:
        return None
    job = dict(token.partition("=")[::2] for token in proc.stdout.split())
    nodes = int(job.get("NumNodes", "1").split("-")[0] or 1)
    tasks = int(job.get("NtasksPerN:B:S:C", "0").split(":")[0] or 0) or -(-int(job.get("NumTasks", "1")) // nodes)
    cpus = int(job.get("CPUs/Task", "1"))
    mem = _mb(job["MinMemoryNode"]) if "MinMemoryNode" in job else _mb(job.get("MinMemoryCPU", "0")) * tasks * cpus
    request = Request(nodes, tasks, cpus, mem, _gpus(job.get("TresPerNode", "")))
    return request, job.get("Partition", "")


def shortfalls(request: Request, nodes: Offer) -> list[str]:
    """How to change `request` to fit the partition, one phrase per flag; [] when enough of its nodes can hold it."""
    if sum(request.fits(node) for node in nodes.nodes) >= request.nodes:
        return []
    short = []
    if request.cpus_per_node > nodes.cpus:
        most = nodes.cpus // request.tasks_per_node
        short.append(f"--cpus-per-task {most} or less (its nodes have {nodes.cpus} CPUs)" if most else
                     f"at most {nodes.cpus} tasks per node (its nodes have {nodes.cpus} CPUs)")
    if request.mem_mb > nodes.mem_mb:
        short.append(f"--mem-gb {nodes.mem_mb / 1024:.1f} or less (0: the partition's default)")
    if request.gpus_per_node > nodes.gpus:
        short.append(f"--gpus-per-node {nodes.gpus}" + (" or less" if nodes.gpus else " (its nodes have no GPU)"))
    if request.nodes > len(nodes.nodes):
        short.append(f"--nodes {len(nodes.nodes)} or less")
    return short or [f"a smaller request: fewer than {request.nodes} of its nodes have all of it at once"]
