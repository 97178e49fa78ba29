#!/usr/bin/env bash
# Sparse fine-tuning on the lent H100 (issue 11). Expects .device/wgsparse,
# .device/libvulkan.so.1, .device/cache/lite0.safetensors and the training
# photos shrunk into .device/train/{train,heldout} (bench/shrink_photos.py on
# the output of scripts/fetch-train-data.sh, so they fit the carry limit).
#   device: MODE=profile bash bench/h100-finetune.sh
#           MODE=train RUNS="NAME:ARGS;NAME:ARGS" SHIP="NAME ..." LIMIT=540 bash bench/h100-finetune.sh
# Runs in parallel share the GPU; checkpoints go to $KEEP (resumed when there,
# e.g. carried back in), the recovered sparse files and curves to $OUT.
set -uo pipefail
OUT=${OUT:-out}; mkdir -p "$OUT"
KEEP=${KEEP:-.device/ckpt}; mkdir -p "$KEEP"
printf '{"file_format_version":"1.0.1","ICD":{"library_path":"/usr/local/nvidia/lib64/libEGL_nvidia.so.0","api_version":"1.4.312"}}' > /tmp/nv_icd.json
export VK_ICD_FILENAMES=/tmp/nv_icd.json LD_LIBRARY_PATH=$PWD/.device:${LD_LIBRARY_PATH:-} XDG_RUNTIME_DIR=/tmp
W=./.device/wgsparse; C=.device/cache; D=.device/train
date -u +"%Y-%m-%d %H:%M UTC" | tee "$OUT/date.txt"
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv | tee -a "$OUT/date.txt"
case "${MODE:-profile}" in
profile)
  for b in 32 64 128; do
    $W finetune --cache $C --data $D/train --pattern 2:4 --steps 20 --batch $b --out /tmp/p.safetensors \
      --profile --log-every 5 > "$OUT/profile-b$b.txt" 2>&1
    grep -E "profile|forward|backward|update|kernel|steps in|error" "$OUT/profile-b$b.txt"
  done ;;
train)
  IFS=';' read -ra R <<< "$RUNS"
  for r in "${R[@]}"; do
    name=${r%%:*}; args=${r#*:}
    # Only the recipes named in $SHIP bring their sparse file and curve back
    # (a run returns a limited number of files).
    dest=/tmp; case " ${SHIP:-} " in *" $name "*) dest=$OUT ;; esac
    $W finetune --cache $C --data $D/train --heldout $D/heldout --out "$dest/$name.safetensors" \
      --checkpoint "$KEEP/$name.ckpt.safetensors" --resume --time-limit ${LIMIT:-540} \
      --curve "$dest/$name.svg" $args > "$OUT/$name.txt" 2>&1 &
  done
  wait
  for r in "${R[@]}"; do name=${r%%:*}; echo "== $name"; grep -v "^  " "$OUT/$name.txt" | tail -8; done
  nvidia-smi --query-gpu=memory.used --format=csv ;;
esac
