#!/bin/bash
# Single-node multi-GPU DDP training of hierlatent with torchrun (Lightning detects TorchElastic).
#
# Usage:   GPUS=4 CONFIG=configs/pcfg.yaml bash launch/torchrun_fit.sh [extra --key value overrides]
# Dry run: DRY_RUN=1 bash launch/torchrun_fit.sh                  (prints the command and exits 0)
# Resume after a crash: run it again; --ckpt_path last continues the same run directory.
# FSDP instead of DDP: STRATEGY=fsdp.

set -euo pipefail

CONFIG=${CONFIG:-configs/pcfg.yaml}
EXTRA_CONFIGS=${EXTRA_CONFIGS:-}     # e.g. "callbacks/paper.yaml"
GPUS=${GPUS:-$(nvidia-smi -L 2>/dev/null | wc -l || echo 1)}
STRATEGY=${STRATEGY:-ddp}
CKPT_PATH=${CKPT_PATH:-last}
MASTER_PORT=${MASTER_PORT:-29500}
HIERLATENT=${HIERLATENT:-hierlatent}   # console script used for the corpus step

configs=(--config "$CONFIG")
for extra in $EXTRA_CONFIGS; do configs+=(--config "$extra"); done
cmd=(torchrun --standalone --nnodes 1 --nproc_per_node "$GPUS" --master_port "$MASTER_PORT"
     --module hierlatent fit "${configs[@]}"
     --trainer.devices "$GPUS" --trainer.accelerator gpu --trainer.strategy "$STRATEGY" --ckpt_path "$CKPT_PATH" "$@")

if [[ "${DRY_RUN:-0}" == "1" ]]; then
    printf '%q ' "$HIERLATENT" generate "${configs[@]}"; printf '\n'
    printf '%q ' "${cmd[@]}"; printf '\n'
    exit 0
fi

# corpus first, in one process, so the ranks do not race to generate it
"$HIERLATENT" generate "${configs[@]}"
exec "${cmd[@]}"
