#!/usr/bin/env bash
# One prepared check on a machine with an accelerator: versions, the core test
# files on that device, then the benchmarks. It uses the JAX stack installed
# there (no venv), with flaxfit from src/ on PYTHONPATH.
#
#     bash benchmarks/gpu_check.sh MNIST_IDX_DIR OUT_DIR
#
# Each step has its own time limit so one slow step cannot eat the others.
set -u
data=${1:?usage: gpu_check.sh MNIST_IDX_DIR OUT_DIR}
out=${2:?usage: gpu_check.sh MNIST_IDX_DIR OUT_DIR}
py=${PYTHON:-python3}
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 FLAXFIT_CACHE=/tmp/flaxfit-cache
mkdir -p "$out"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
$py -c 'import jax, flax, optax, orbax.checkpoint, numpy, sys
print("python", sys.version.split()[0], "jax", jax.__version__, "flax", flax.__version__,
      "optax", optax.__version__, "numpy", numpy.__version__, jax.devices())' | tee "$out/versions.txt"

# Several pytest workers share one GPU: without this each would grab 75% of its memory.
XLA_PYTHON_CLIENT_PREALLOCATE=false timeout 200 $py -m pytest -q -n 6 -p no:cacheprovider \
    tests/test_models.py tests/test_train.py tests/test_loop.py tests/test_resume.py \
    tests/test_mixed_precision.py tests/test_verify.py 2>&1 | tee "$out/tests.txt" | tail -25

# The deck's own layers use nn.max_pool, whose gradient XLA:GPU refuses to compile
# deterministically, so this comparison runs with XLA's default (autotuned) kernels.
timeout 150 $py benchmarks/bench_fit.py --data-dir "$data" --epochs 3 2>&1 | tee "$out/bench_fit.txt"

# Throughput as `flaxfit train` runs (deterministic kernels, see flaxfit/xla_env.py) and
# with XLA's defaults: the price of bit-exact resume on GPU.
det=--xla_gpu_deterministic_ops=true
for flags in "$det" --xla_gpu_deterministic_ops=false; do
    echo "# XLA_FLAGS=$flags"
    XLA_FLAGS=$flags timeout 100 $py benchmarks/bench_devices.py --data-dir "$data" \
        --models softmax cnn1 cnn2 --batch-sizes 128 1024 2>&1
done | tee "$out/bench_devices.txt"
