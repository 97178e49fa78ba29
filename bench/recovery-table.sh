#!/usr/bin/env bash
# The recovery table of issue 11 (agreement is adapter-independent up to
# float rounding): one-shot magnitude, + re-normalization, + auto budget, and
# the fine-tuned files, on the held-out photos of data/train-manifest.tsv
# minus scikit-image's (the one-shot methods calibrate on those), as shrunk by
# bench/shrink_photos.py. The auto budget measures sensitivity: slow on a CPU
# adapter, seconds on a GPU.
#   device: W=.device/wgsparse CACHE=.device/cache EVAL=.device/eval FT=none bash bench/recovery-table.sh
#   here:   ONESHOT=no EVAL=.device/eval bash bench/recovery-table.sh   (the fine-tuned files in models/)
set -uo pipefail
W=${W:-target/release/wgsparse}; FT=${FT:-models}; CACHE=${CACHE:-cache}
EVAL=${EVAL:-cache/eval-heldout}
if [ ! -d "$EVAL" ]; then
  mkdir -p "$EVAL"
  for f in cache/train/heldout/*; do case $(basename "$f") in scikit-image__*) ;; *) cp "$f" "$EVAL/";; esac; done
fi
agree() { "$W" eval "$EVAL" --cache "$CACHE" "$@" 2>/dev/null | grep -o "agreement with the dense model [0-9.]*%" | grep -o "[0-9.]*%"; }
echo "held-out photos: $(ls "$EVAL" | wc -l) in $EVAL; $(date -u +%Y-%m-%d)"
[ "${ONESHOT:-yes}" = yes ] && for cfg in "unstructured --sparsity 0.5" "unstructured --sparsity 0.7" "unstructured --sparsity 0.9" "2:4" "block:16x16 --sparsity 0.7"; do
  p=$(echo $cfg | cut -d' ' -f1); rest=${cfg#$p}
  echo "== $cfg"
  echo "magnitude:                  $(agree --pattern $p $rest)"
  echo "+ renorm:                   $(agree --pattern $p $rest --renorm)"
  echo "+ renorm + auto budget:     $(agree --pattern $p $rest --renorm --budget auto)"
done
[ -d "$FT" ] && for f in "$FT"/*.safetensors; do
  echo "fine-tuned $(basename "$f"): $(agree --weights "$f")"
done
