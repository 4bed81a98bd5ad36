"""Read the run records of an offline W&B run file (``offline-run-*/run-<id>.wandb``).

wandb 0.31 no longer ships a Python reader (its core is a Go binary), so tests read the
file format directly: a 7-byte header (``:W&B``, magic, version) then LevelDB-log style
32 KiB blocks of chunks ``crc32(4) length(2, LE) type(1)``; type FULL=1 / FIRST=2 /
MIDDLE=3 / LAST=4 chunks join into one ``wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BLOCK = 32 * 1024
HEADER = 7


def records(path: str | Path) -> Iterator[object]:
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run file (header {data[:7]!r})")
    pos, buffer = HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if kind == 0 and length == 0:  # zero padding up to the block end
            pos += left
            continue
        buffer += data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(buffer)
            buffer = b""
            yield record


@dataclass
class OfflineRun:
    run_id: str
    group: str
    exit_code: int | None
    steps: list[int]


def read_run(run_dir: str | Path) -> OfflineRun:
    """The id, group, exit code and logged ``trainer/global_step`` values of one offline run dir."""
    files = list(Path(run_dir).glob("*.wandb"))
    if len(files) != 1:
        raise FileNotFoundError(f"expected one .wandb file in {run_dir}, found {files}")
    run_id = group = None
    exit_code = None
    steps: list[int] = []
    for record in records(files[0]):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run_id, group = record.run.run_id, record.run.run_group
        elif kind == "exit":
            exit_code = record.exit.exit_code
        elif kind == "history":
            for item in record.history.item:
                key = item.key or "/".join(item.nested_key)
                if key == "trainer/global_step":
                    steps.append(int(float(item.value_json)))
    return OfflineRun(run_id=run_id, group=group, exit_code=exit_code, steps=steps)
