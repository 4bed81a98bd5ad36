"""Multi-node DDP on a shared filesystem: the file tree is listed once per job, not once per node.

Two "nodes" (two train.py processes, trainer.num_nodes=2 x 1 device, NODE_RANK 0/1, gloo on
localhost) read the same class-folder tree, as nodes of a cluster read one shared filesystem.
Lightning runs ``prepare_data`` on local rank 0 of every node by default, so each node indexed
the tree (and wrote the index cache); now global rank 0 indexes and broadcasts its indices.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from tests.helpers.imagenet_trees import age_tree, build_train, build_val, generated_samples
from tests.helpers.run_helpers import REPO_ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_on_one_shared_tree_scan_it_once(tmp_path, user_cache):
    samples = generated_samples(tmp_path / "gen", num_classes=3, per_class=4, size=(24, 24))
    root = tmp_path / "tree"
    build_train(root, samples)
    build_val(root, samples, "folders")
    age_tree(root)
    record = tmp_path / "scans"
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "WORLD_SIZE", "NODE_RANK", "GLOBAL_RANK")}
    env.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), WANDB_MODE="disabled", NO_ALBUMENTATIONS_UPDATE="1"
    )
    nodes = [
        subprocess.Popen(
            [
                sys.executable,
                "train.py",
                "dataset=class_folder",
                f"dataset.data_dir={root}",
                "augmentation=imagenet",
                "augmentation.resolution=16",
                "model=small_cnn",
                "model.backbone.width=4",
                "dataset.num_workers=0",
                "dataset.batch_size=4",
                "trainer=ddp_sim",
                "trainer.devices=1",
                "trainer.num_nodes=2",
                "trainer.max_epochs=1",
                "logger=none",
                "test=false",
                "~callbacks.rich_progress_bar",
                "+callbacks.scan_counter._target_=tests.helpers.scan_counter.ScanCounter",
                f"+callbacks.scan_counter.tree={root}",
                f"+callbacks.scan_counter.out_dir={record}",
                f"hydra.run.dir={tmp_path / f'node{node}'}",
            ],
            cwd=REPO_ROOT,
            env={**env, "NODE_RANK": str(node)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for node in (0, 1)
    ]
    outputs = [node.communicate(timeout=600)[0] for node in nodes]
    for node, output in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, output[-5000:]
    scans = [json.loads((record / f"scans_rank{rank}.json").read_text())["scans"] for rank in (0, 1)]
    assert scans[0] > 0  # global rank 0 listed train/ and val/ and their class folders
    assert scans[1] == 0, f"node 1 listed the shared tree again ({scans[1]} directory listings)"
    assert len(list(user_cache.glob("index-*.npz"))) == 2  # train + val, written once
