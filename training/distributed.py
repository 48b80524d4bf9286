"""Data-parallel training over several processes, on one machine or several, with Paddle's
collective `DataParallel` (gloo on CPU, NCCL on GPU) under `paddle.distributed.launch`.

`movierec train sasrec|ncf|two-tower|ranker --nproc N [--nnodes M --master HOST:PORT]` starts
itself again under the launcher (`launch`); every process then builds the same model from the
same seed, takes its share of each epoch's batches (`shard`: Paddle's DistributedBatchSampler
over the batch list, padded so every process takes as many steps), and the gradients are
averaged after each step, so the weights stay the same on every process. Every process
validates (the same weights give the same decision to stop); only the first writes the run
directory. Each process gets an equal share of the machine's cores for its OpenMP and BLAS
threads. One process (the default) changes nothing.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, TypeVar

import numpy as np

from movierec.errors import ConfigError, MovieRecError
from movierec.options import option

T = TypeVar("T")
LAUNCHED = "PADDLE_TRAINER_ID"   # set by paddle.distributed.launch in every process it starts


@dataclass
class Processes:
    """The training command's processes (options of every `movierec train` command but lgbm's)."""

    nproc: int = option(1, "Training processes on this machine: data-parallel, Paddle's collective (gloo on CPU, "
                        "NCCL on GPU); each gets an equal share of the cores.")
    nnodes: int = option(1, "Machines training together (run the same command on each).")
    master: str = option("", "With --nnodes above 1: HOST:PORT of the first machine, the same on every one.")

    def __post_init__(self) -> None:
        if self.nproc < 1 or self.nnodes < 1:
            raise ConfigError("--nproc and --nnodes must be at least 1")
        if self.nnodes > 1 and not self.master:
            raise ConfigError("--nnodes above 1 needs --master HOST:PORT (the same on every machine)")

    def launch_here(self, log_dir: Path) -> bool:
        """Start the training processes when more than one is asked for and this is not one of
        them; returns whether it did (the command then has nothing more to do)."""
        if (self.nproc == 1 and self.nnodes == 1) or LAUNCHED in os.environ:
            return False
        code = launch(relaunch_args(sys.argv[1:]), self.nproc, self.nnodes, self.master, log_dir)
        if code:
            raise DistributedError(f"distributed training failed (exit status {code}); each process' log is in "
                                   f"{log_dir}")
        return True


class DistributedError(MovieRecError):
    """A training process of several failed."""


def world() -> tuple[int, int]:
    """(this process' rank, the number of processes)."""
    return int(os.environ.get(LAUNCHED, 0)), int(os.environ.get("PADDLE_TRAINERS_NUM", 1))


def is_main() -> bool:
    return world()[0] == 0


def start() -> None:
    """Join the process group (a no-op for one process)."""
    if world()[1] > 1:
        import paddle.distributed as dist

        dist.init_parallel_env()


def barrier() -> None:
    if world()[1] > 1:
        import paddle.distributed as dist

        dist.barrier()


def parallel(model):
    """`DataParallel(model)` across the processes (the model itself for one)."""
    if world()[1] == 1:
        return model
    import paddle

    return paddle.DataParallel(model)


def shard(batches: Iterable[T]) -> Iterable[T]:
    """This process' share of an epoch's batches (all of them for one process)."""
    rank, size = world()
    if size == 1:
        yield from batches
        return
    from paddle.io import DistributedBatchSampler

    batches = list(batches)
    sampler = DistributedBatchSampler(range(len(batches)), batch_size=1, num_replicas=size, rank=rank, shuffle=False)
    for (index,) in sampler:
        yield batches[index]


def parameters_digest(model) -> str:
    """A digest of the weights, logged by every process: equal on all of them when in step."""
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(value.numpy()).tobytes())
    return digest.hexdigest()


def launch(argv: list[str], nproc: int, nnodes: int, master: str, log_dir: Path) -> int:
    """Run `movierec ARGV` as `nproc` processes on this node (of `nnodes`); returns the exit code."""
    cli = Path(__file__).resolve().parents[1] / "cli" / "__main__.py"
    env = dict(os.environ)
    threads = max(1, (os.cpu_count() or 1) // nproc)
    env.update(OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    command = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", str(nproc),
               "--log_dir", str(log_dir)]
    if nnodes > 1:
        command += ["--nnodes", str(nnodes), "--master", master]
    return subprocess.call([*command, str(cli), *argv], env=env)


def relaunch_args(argv: list[str]) -> list[str]:
    """The command line without the options that asked for the launch."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in ("--nproc", "--nnodes", "--master"):
            skip = "=" not in arg
            continue
        out.append(arg)
    return out
