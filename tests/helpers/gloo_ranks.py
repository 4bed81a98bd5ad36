"""Run a function on two real processes joined by a gloo process group (for metric-sync tests)."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank_main(rank: int, fn: Callable[[int, int], dict], world_size: int, port: int, out_dir: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        result = fn(rank, world_size)
    finally:
        dist.destroy_process_group()
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))


def run_on_ranks(fn: Callable[[int, int], dict], out_dir: Path, world_size: int = 2) -> list[dict]:
    """``fn(rank, world_size)`` on each rank (``fn`` must be a module-level function, and
    return JSON); the results, rank by rank."""
    import torch.multiprocessing as mp

    mp.spawn(_rank_main, args=(fn, world_size, free_port(), str(out_dir)), nprocs=world_size, join=True)
    return [json.loads(Path(out_dir, f"rank{rank}.json").read_text()) for rank in range(world_size)]
