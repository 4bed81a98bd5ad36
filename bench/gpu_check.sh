#!/usr/bin/env bash
# The GPU checks in one prepared script (under 8 minutes on one GPU), writing one JSON of figures:
#   bench/gpu_check.sh [OUT_DIR]            # on a GPU machine; default OUT_DIR=${OUT:-/tmp/gpu_check}
#   bench/gpu_check.sh --dry-run [OUT_DIR]  # anywhere: print the commands it would run, run nothing
# 1. experiment=cifar10_fast trainer=gpu on the real CIFAR-10 subset (accuracy, wall time);
# 2. images/s of a ResNet-50 bf16 channels-last training step fed by the ImageNet file pipeline from
#    the real sample JPEGs, eager and with model.compile (bench/gpu_resnet50_step.py);
# 3. model.compile=true in a real run (experiment=cifar10_fast, 3 epochs);
# 4. a short fine-tune: experiment=finetune_cifar10 trainer=gpu on the subset for 1 epoch from a local
#    ResNet-50 weight file (the machine has no internet: torchvision's file when cached, else random
#    weights, which checks the mechanics and speed, not transfer accuracy).
# Data: ../shared/data beside the checkout (DATA= to move it).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DRY=0
if [[ "${1:-}" == "--dry-run" ]]; then DRY=1; shift; fi
OUT_DIR="${1:-${OUT:-/tmp/gpu_check}}"
DATA="${DATA:-$ROOT/../shared/data}"
PY="${PYTHON:-python}"
CIFAR="$DATA/cifar10-subset"
SAMPLES="$DATA/imagenet-samples"
WEIGHTS="$OUT_DIR/resnet50_start.pth"
COMMON="logger=csv dataset.data_dir=$CIFAR hydra.run.dir=$OUT_DIR/runs"

COMMANDS=(
  "$PY train.py experiment=cifar10_fast trainer=gpu $COMMON/cifar10_fast"
  "$PY bench/gpu_resnet50_step.py --images $SAMPLES --out $OUT_DIR/step_eager.json"
  "$PY bench/gpu_resnet50_step.py --images $SAMPLES --out $OUT_DIR/step_compiled.json --compile"
  "$PY train.py experiment=cifar10_fast trainer=gpu model.compile=true trainer.max_epochs=3 $COMMON/cifar10_fast_compiled"
  "$PY train.py experiment=finetune_cifar10 trainer=gpu trainer.max_epochs=1 dataset.download=false model.backbone.weights=$WEIGHTS $COMMON/finetune_cifar10"
)
NAMES=(cifar10_fast step_eager step_compiled cifar10_fast_compiled finetune_cifar10)

if [[ $DRY == 1 ]]; then
  for command in "${COMMANDS[@]}"; do echo "$command"; done
  exit 0
fi
cd "$ROOT"
mkdir -p "$OUT_DIR/runs"
# the fine-tune's starting weights: torchvision's cached file if there, else random ResNet-50 weights
"$PY" - "$WEIGHTS" <<'PYEOF'
import glob, os, shutil, sys, torch
from litvision.lightning_modules.backbones import build_backbone
cached = glob.glob(os.path.expanduser("~/.cache/*/weights/resnet50-*.pth")) + glob.glob(os.path.expanduser("~/.cache/torch/hub/checkpoints/resnet50-*.pth"))
if cached:
    shutil.copy(cached[0], sys.argv[1])
else:
    torch.save(build_backbone("resnet50", num_classes=1000).state_dict(), sys.argv[1])
print("start weights:", cached[0] if cached else "random (no cached torchvision file)")
PYEOF
for i in "${!COMMANDS[@]}"; do
  echo "== ${NAMES[$i]}: ${COMMANDS[$i]}"
  start=$(date +%s)
  log="$OUT_DIR/${NAMES[$i]}.log"
  if eval "${COMMANDS[$i]}" >"$log" 2>&1; then status=ok; else status=failed; fi
  echo "{\"name\": \"${NAMES[$i]}\", \"status\": \"$status\", \"wall_s\": $(( $(date +%s) - start ))}" >>"$OUT_DIR/steps.jsonl"
  tail -3 "$log"
done
# one JSON: each step's status and wall time, the runs' metrics.json, the step benchmarks' figures
"$PY" - "$OUT_DIR" <<'PYEOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
figures = {"steps": [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]}
for name in ("step_eager", "step_compiled"):
    if (out / f"{name}.json").is_file():
        figures[name] = json.loads((out / f"{name}.json").read_text())
figures["runs"] = {}
for metrics in sorted((out / "runs").glob("*/metrics.json")):
    data = json.loads(metrics.read_text())
    keep = {k: v for k, v in data.items() if isinstance(v, (int, float)) and ("acc" in k or "time" in k or "epoch" in k)}
    figures["runs"][metrics.parent.name] = keep
(out / "gpu_check.json").write_text(json.dumps(figures, indent=1))
print(json.dumps(figures, indent=1))
PYEOF
