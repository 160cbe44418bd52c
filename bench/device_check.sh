#!/usr/bin/env bash
# The GPU machine's checks and figures in one call (docs/performance.md, "GPU figures").
#
#   bash bench/device_check.sh [STEP...]      (default: every step, in this order)
#
# tests:     the GPU path's tests (tests/test_gpu_path.py) and the runtime tests, on the GPU machine
# crops:     the model time the hand and face crops add (bench_detail.py, 0.4b, auto format)
# inference: the reference recipe against ours (bench_inference.py, 0.4b, batches 1 and 8)
# precision: bf16 against fp32 on real-size models (bench_precision.py, 0.4b)
# compiled:  ours with torch.compile and CUDA graphs (bench_inference.py --compile reduce-overhead)
# big:       the 5b pose model at batch 1: speed and peak memory
# profile:   ours at batch 8, one call per task under torch.profiler: where the device time goes
# ondevice:  ours with inputs and outputs on the GPU, as predict's GPU path runs the models
# Each step has its own time limit and log (under $OUT, or /tmp/device_out), so one failure does
# not hide the others. Runs on the machine's own python3 (3.12, its CUDA torch, numpy 2): packages
# it lacks travel as wheels in .whl/, the parity fixtures in .devshared/reference (both ignored by
# git; docs/performance.md says how they are made).
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/device_out}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
if ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "the carried wheels did not install"; exit 1; }
    export PYTHONPATH=/tmp/site:$PWD
fi
[ -d .devshared/reference ] && export SAPIENS_SHARED=$PWD/.devshared

step() {   # step NAME SECONDS COMMAND...: run with a limit, log to $OUT/NAME.log, show its end
    local name=$1 limit=$2
    shift 2
    echo "=== $name ($(date -u +%T), limit ${limit} s)"
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    tail -n "${TAIL:-30}" "$OUT/$name.log"
    echo "=== $name rc=$rc"
}

{
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
    $PY -c "import sys, torch, numpy, cv2; print('python', sys.version.split()[0], 'torch', torch.__version__,
'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), 'numpy', numpy.__version__, 'cv2', cv2.__version__)"
    nproc
} >"$OUT/env.log" 2>&1
cat "$OUT/env.log"

tests() {
    step tests 150 $PY -m pytest -q -s -p no:cacheprovider tests/test_gpu_path.py tests/test_runtime_gpu_ops.py \
        tests/test_runtime_torch.py
}
crops() {
    step crops 100 $PY bench/bench_detail.py --people 0 --models-size 0.4b --models-device cuda \
        --models-dtype auto --repeats 4
}
inference() { step inference 200 $PY bench/bench_inference.py --repeats 3 --json "$OUT/inference.json"; }
precision() { step precision 120 $PY bench/bench_precision.py --json "$OUT/precision.json"; }
compiled() { step compiled 150 $PY bench/bench_inference.py --skip-reference --compile reduce-overhead --repeats 3; }
profile() {
    TAIL=80 step profile 150 $PY bench/bench_inference.py --skip-reference --batches 8 --repeats 1 --profile
}
ondevice() {
    step ondevice 150 $PY bench/bench_inference.py --skip-reference --keep-on-device --repeats 3 \
        --json "$OUT/ondevice.json"
}
big() {
    step big 200 $PY bench/bench_inference.py --skip-reference --size 5b --tasks pose --batches 1 --images 1 \
        --repeats 2
}

for name in "${@:-tests crops inference ondevice precision compiled profile big}"; do
    for one in $name; do
        case $one in
            tests | crops | inference | precision | compiled | profile | ondevice | big) $one ;;
            *) echo "unknown step $one" ;;
        esac
    done
done
