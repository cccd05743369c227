#!/usr/bin/env bash
# Issue 8's accelerator checks in one call, from the repository root:
#   OUT=/tmp/gpu bash actclr_jax/train/gpu_benchmarks.sh
# (the packages of requirements.txt installed, with jax for the GPU; README, "On a GPU").
# Writes under $OUT: bench.txt (the train-step benchmark in float32 and bfloat16 at batch 128,
# with the op-class profile; with LOADER=1 the loader benchmark too), run_DTYPE.log (a timed
# 2-epoch synthetic pretraining at NTU-60 xview size: 37,665 training sequences, 1 epoch of MoCo v2
# then 1 of ActCLR), gpu_util_DTYPE.csv (nvidia-smi once a second during that run) and, with
# KEEP_TRACES=1, the profiler traces ($OUT brings back at most 8 files).
# Each stage has its own time limit, so a slow stage cannot take the others' results with it.
# SAMPLES, BATCH and STEPS shrink it for a CPU dry run; RUN_DTYPES="bfloat16 float32" times one
# run per compute dtype (default float32), LOADER=1 adds the loader benchmark, MAIN_JOB=1 times
# the README's main job. TESTS="tests/test_models.py" [TESTS_K="a or b"] runs those tests on the
# accelerator. PROFILE_DTYPES="float32" profiles the step in float32 only (default both).
# BASE=DIR also times the step of the code in DIR (an exported older commit: its own actclr_jax/
# and configs/), in float32 and bfloat16, for a ratio within one lease.
set -u
OUT=${OUT:?set OUT to an output folder}
SAMPLES=${SAMPLES:-56400}   # 2/3 of them are views 2 and 3: xview train
BATCH=${BATCH:-128}
# A profiled float32 stage with the inference benchmark took over 100 s on an H200 (stop 28).
STAGE_LIMIT=${STAGE_LIMIT:-150}
RUN_LIMIT=${RUN_LIMIT:-120}
RUN_DTYPES=${RUN_DTYPES:-${RUN_DTYPE:-float32}}
PROFILE_DTYPES=${PROFILE_DTYPES:-float32 bfloat16}
DATA=/tmp/actclr_ntu_size_synthetic
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
# A warm machine keeps /tmp: an old run's workdir would be resumed, not timed, and old traces
# would be copied as new ones.
rm -rf /tmp/trace_float32 /tmp/trace_bfloat16 /tmp/ntu_size_run_* /tmp/main_job
stamp() { echo "== $(date +%T) $*" | tee -a "$OUT/bench.txt"; }
quiet() { grep -v -E "^[IW][0-9]{4} " ; }

stamp "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 \
  | tee -a "$OUT/bench.txt"
python3 -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, \
'optax', optax.__version__, jax.devices())" 2>&1 | quiet | tee -a "$OUT/bench.txt"

# The timed run's data set, generated on the CPU while the GPU runs the step benchmarks.
( JAX_PLATFORMS=cpu python3 -m actclr_jax.data.prepare synthetic --out_dir="$DATA" \
    --num_samples="$SAMPLES" > "$OUT/prepare.log" 2>&1; echo "prepare rc $?" >> "$OUT/prepare.log" ) &
prepare_pid=$!

# Importing actclr_jax turns off Triton GEMM fusion (XLA_FLAGS), which aborts jax 0.11.2's GPU
# compiler on this step.
bench() {  # dtype, extra flags...
  local dtype=$1; shift
  local profile=()
  [[ " $PROFILE_DTYPES " == *" $dtype "* ]] && profile=(--profile --trace_dir="/tmp/trace_$dtype")
  stamp "train step, $dtype, batch $BATCH"
  timeout "$STAGE_LIMIT" python3 -m actclr_jax.train.benchmark --batch_size="$BATCH" \
    --steps="${STEPS:-30}" --compute_dtype="$dtype" --accelerator=h200_sxm "${profile[@]}" "$@" \
    2>&1 | quiet | grep -v -E "^ +@ |^  File " | tee -a "$OUT/bench.txt"
}
bench float32 --inference_batch_sizes=1024
bench bfloat16
for dtype_variant in ${KEEP_TRACES:+float32/moco float32/actclr bfloat16/moco bfloat16/actclr}; do
  trace=$(find "/tmp/trace_${dtype_variant%/*}/${dtype_variant#*/}" -name '*.trace.json.gz' 2>/dev/null | head -1)
  [ -n "$trace" ] && cp "$trace" "$OUT/trace_${dtype_variant/\//_}.json.gz"
done

if [ -n "${BASE:-}" ]; then
  for dtype in float32 bfloat16; do
    stamp "train step of $BASE, $dtype, batch $BATCH"
    ( cd "$BASE" && timeout "$STAGE_LIMIT" python3 -m actclr_jax.train.benchmark \
        --batch_size="$BATCH" --steps="${STEPS:-30}" --compute_dtype="$dtype" \
        --accelerator=h200_sxm 2>&1 | quiet | grep -E "samples/s|compile|Error" ) \
      | tee -a "$OUT/bench.txt"
  done
fi

if [ -n "${TESTS:-}" ]; then
  stamp "tests on $(python3 -c 'import jax; print(jax.default_backend())' 2>/dev/null): $TESTS"
  # One process (-n 0): xdist workers would each take most of the GPU's memory.
  # shellcheck disable=SC2086  # TESTS is a pytest argument list
  timeout "${TESTS_LIMIT:-120}" python3 -m pytest -q -p no:cacheprovider -n 0 $TESTS \
    ${TESTS_K:+-k "$TESTS_K"} 2>&1 | quiet | tail -15 | tee -a "$OUT/bench.txt"
fi

if [ -n "${LOADER:-}" ]; then
  stamp "loader"
  timeout 60 python3 -m actclr_jax.data.benchmark --num_samples=16384 --batch_size="$BATCH" \
    --worker_counts=0,4 2>&1 | quiet | tee -a "$OUT/bench.txt"
fi

stamp "waiting for the data set"
wait "$prepare_pid"
tail -3 "$OUT/prepare.log" | tee -a "$OUT/bench.txt"

for dtype in $RUN_DTYPES; do
  stamp "timed pretraining run, $dtype"
  nvidia-smi --query-gpu=timestamp,utilization.gpu,utilization.memory,memory.used,power.draw \
    --format=csv -l 1 > "$OUT/gpu_util_$dtype.csv" 2>&1 &
  smi_pid=$!
  timeout "$RUN_LIMIT" python3 main.py --config=configs/synthetic.py:xview \
    --workdir="/tmp/ntu_size_run_$dtype" \
    --config.data.root="$DATA" --config.data.synthetic_samples="$SAMPLES" \
    --config.batch_size="$BATCH" --config.moco.bank_size=32768 --config.moco.momentum=0.999 \
    --config.num_epochs=2 --config.actionlet.start_epoch=1 --config.lr_decay_epochs="()" \
    --config.knn_every_epochs=0 --config.checkpoint_every_epochs=2 --config.log_every_steps=50 \
    --config.model.compute_dtype="$dtype" \
    > "$OUT/run_$dtype.log" 2>&1
  echo "run rc $?" >> "$OUT/run_$dtype.log"
  kill "$smi_pid" 2>/dev/null
  grep -E "samples/s|pretraining finished|rc " "$OUT/run_$dtype.log" | tee -a "$OUT/bench.txt"
done
if [ -n "${MAIN_JOB:-}" ]; then  # the README's main job, with its monitor and evaluations
  stamp "main job"
  start=$(date +%s)
  timeout "${MAIN_JOB_LIMIT:-300}" python3 main.py --config=configs/synthetic.py \
    --workdir=/tmp/main_job > "$OUT/main_job.log" 2>&1
  echo "main job rc $? in $(( $(date +%s) - start )) s" | tee -a "$OUT/bench.txt"
  tail -12 "$OUT/main_job.log" | tee -a "$OUT/bench.txt"
fi
stamp "done"
