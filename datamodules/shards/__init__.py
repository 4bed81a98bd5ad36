"""WebDataset tar shards, both sides: writing a file dataset (``prepare.py``, ``write_plan.py``, ``writer.py``;
``prepare_shards.py``) and reading a shard set (``manifest.py``, ``read_plan.py``, ``stream.py``).

The shards hold the original image bytes (no re-encode), a label and an id per sample; the
manifest (:mod:`litvision.datamodules.shards.manifest`) lists every shard with its sample count and
SHA-256 and the per-class counts of every split. The DataModule that reads them
is :mod:`litvision.datamodules.shard_datamodule` (``dataset=imagenet_shards``).

Engine: WebDataset (pure Python, plain tar files any tool can read, streamed from a local
disk, HTTP(S), GCS, AIStore or any ``pipe:`` command); its only dependencies are braceexpand,
numpy and pyyaml. LitData was the other candidate and is NOT used: it requires torchvision,
and on a CPU-only machine ``pip install --dry-run litdata`` (litdata 0.2.76, checked on the
build machine) resolves to torchvision 0.29.1 plus torch 2.14.1 *replacing* the installed CPU
build with the CUDA one and its ~17 nvidia-* libraries (cuDNN, cuBLAS, NCCL, ...): several GB
for a data-loading extra.
"""
