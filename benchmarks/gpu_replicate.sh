#!/usr/bin/env bash
# The quality study and the heads' speed benchmark on a lent GPU machine, inside one call of
# the device tool: it runs in a copy of this repository, with the folder made here by
#   python benchmarks/device_carry.py pack .devcarry --tasks MRPC RTE
# carried along (.git/info/exclude ignores it), and writes what comes back under $OUT:
#   gpu.txt                        the card and driver
#   speed-<gpu>-heads.json, .log   every head's training step vs stock at MiniLM dimensions
#                                  (the GPU twin of speed-cpu-heads.json); timed first, alone
#   compare-gpu.tar.gz             the study's run files (compare-gpu/<TASK>/runs/*.json),
#                                  every head seed-major, fp16 as fairseq's recipe trains on GPUs
#   logs.tar.gz, study.log         the training logs and the study's progress
# The study stops at GPU_BUDGET_S seconds from the start (runs not finished by then are
# dropped; the seed-major order leaves whole seeds first). Unpack the tarball into
# benchmarks/results/ and run benchmarks/report.py --refresh --update-readme.
# Measured on an H200 (2026-12-04): the speed part takes about 65 s, and 14 jobs finish about
# 6 MRPC/RTE fine-tunings a minute, so one 10-minute call holds about 45 runs (seeds 1-4 of
# every head on both tasks); 10 seeds of every head on four tasks need several calls.
#
#   bash benchmarks/gpu_replicate.sh .devcarry
set -u
CARRY="${1:-.devcarry}"
OUT="${OUT:-/tmp/gpu-out}"
BUDGET="${GPU_BUDGET_S:-540}"
JOBS="${GPU_JOBS:-14}"
HEADS="stock hire hire-no-fusion scalar-mix last4-mean"
SPEED_CONFIGS="stock hire hire-no-fusion hire-scalar-mix scalar-mix scalar-mix-ln last4-mean last4-concat hire-d4 hire-d8"
start=$(date +%s)
mkdir -p "$OUT" /tmp/site
tar -xJf "$CARRY/site.tar.xz" -C /tmp/site || exit 1
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
python3 -c "import fairseq, fairseq_hire.workflow.finetune, torch; print('fairseq', fairseq.__version__, 'torch', torch.__version__, torch.cuda.get_device_name())" 2>&1 \
  | grep -v tensorboardX | tee -a "$OUT/gpu.txt" | grep -q "^fairseq" || { cat "$OUT/gpu.txt"; exit 1; }
python3 benchmarks/device_carry.py unpack "$CARRY" /tmp/work || exit 1
gpu=$(python3 -c "import torch; print(torch.cuda.get_device_name().replace(' ', '-'))")
# shellcheck disable=SC2086
timeout 150 python3 benchmarks/speed.py --device cuda --sizes minilm --configs $SPEED_CONFIGS --train-step-only \
  --repeats 5 --glue-data "$CARRY/glue" --out "$OUT/speed-$gpu-heads.json" > "$OUT/speed.log" 2>&1
echo "speed: exit $? after $(( $(date +%s) - start )) s" | tee -a "$OUT/gpu.txt"
left=$(( BUDGET - ($(date +%s) - start) - 20 ))
# shellcheck disable=SC2086
timeout "$left" python3 benchmarks/quality.py --device gpu --tasks MRPC RTE --heads $HEADS --seeds 1-10 \
  --jobs "$JOBS" --out /tmp/compare-gpu --work /tmp/work > "$OUT/study.log" 2>&1
echo "study: exit $? after $(( $(date +%s) - start )) s" | tee -a "$OUT/gpu.txt"
grep -c '^done' "$OUT/study.log" | sed 's/^/runs done: /' | tee -a "$OUT/gpu.txt"
tar -czf "$OUT/compare-gpu.tar.gz" --exclude='*.lock' -C /tmp compare-gpu
(cd /tmp/work && tar -czf "$OUT/logs.tar.gz" compare/*/logs)  # not the checkpoints of failed runs
