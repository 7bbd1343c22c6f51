#!/usr/bin/env bash
# The benchmark suite on one CUDA GPU, in under 5 minutes.
#
#   bash benchmarks/gpu.sh                 # from anywhere; writes to $OUT or bench_out/gpu/
#
# Needs `python3` (or $PYTHON) with jax[cuda], flax, optax, chex, numpy and, optionally,
# equinox, dm-haiku and torch with CUDA; jrnn is imported from this checkout (PYTHONPATH=.),
# it need not be installed.  Missing peers are skipped with a note in the results.
#
# What it runs (one process, so every ratio is measured side by side):
#   * configs medium and large: jrnn, Flax linen and NNX, Equinox, Haiku, JAX's cuDNN LSTM
#     (jax.experimental.rnn.lstm) and PyTorch (torch .cuda(): cuDNN), training step and
#     forward pass, LSTM and GRU, 5 rounds;
#   * config long (B=8, T=4096): jrnn vs the two cuDNN LSTMs only, 3 rounds;
#   * every row at the same float32 matmul precision, full float32 by default
#     (BENCH_PRECISION=highest; tf32 gives everyone TensorFloat-32 products; default leaves
#     each library's own: JAX TF32, PyTorch float32 matmuls with TF32 in cuDNN), stated in
#     the row's precision column;
#   * at medium, jrnn's hoist=True/False x vjp="hoisted"/"autodiff" grid (and remat=step),
#     to choose the GPU defaults by measurement.
# Every timing synchronises (jax.block_until_ready, torch.cuda.synchronize).  Results are
# rewritten after every (config, cell) group, so the time limit below keeps what was done.
#
# With BENCH_NEWTON=1 it then runs benchmarks/newton.py (scan vs DEER vs quasi-DEER; its own
# limit BENCH_NEWTON_TIMEOUT, default 300 s) into $OUT_DIR/newton_gpu.{json,md}; with
# BENCH_MODERN=1 benchmarks/linear_scan.py for the RG-LRU and benchmarks/mlstm_parallel.py for
# the mLSTM at T = 256, 4096, 16384 (scan vs associative scan; limit BENCH_MODERN_TIMEOUT,
# default 300 s each) into $OUT_DIR/modern/.
# Environment: OUT (output folder), PYTHON, BENCH_CONFIGS (default medium,large,long),
# BENCH_PRECISION (highest | tf32 | default; default highest),
# BENCH_TIMEOUT (seconds, default 290), BENCH_ALLOW_CPU=1 (run without a GPU: for testing
# this script), XLA_PYTHON_CLIENT_MEM_FRACTION (default 0.5: JAX leaves half the GPU to
# PyTorch in the same process).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-python3}"
OUT_DIR="${OUT:-bench_out/gpu}"
mkdir -p "$OUT_DIR"
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.5}"

if [[ "${BENCH_ALLOW_CPU:-0}" != "1" ]]; then
  "$PY" - <<'EOF'
import sys

import jax

if jax.default_backend() != "gpu":
    sys.exit(f"gpu.sh: JAX sees no GPU (backend {jax.default_backend()!r}); "
             "install jax[cuda] or set BENCH_ALLOW_CPU=1")
print("JAX devices:", jax.devices())
try:
    import torch

    print("torch", torch.__version__, "CUDA:", torch.cuda.is_available(),
          torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
except ImportError:
    print("torch not installed: PyTorch rows will be skipped")
EOF
fi

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv \
  >"$OUT_DIR/nvidia-smi.txt" 2>&1 || true

status=0
timeout --signal=INT "${BENCH_TIMEOUT:-290}" "$PY" -m benchmarks.run \
  --configs "${BENCH_CONFIGS:-medium,large,long}" \
  --rounds 5 --long-rounds 3 --target-time 0.05 \
  --impls jrnn,jrnn-variants,flax,nnx,equinox,haiku,jax-rnn,torch \
  --long-impls jrnn,jax-rnn,torch \
  --precision "${BENCH_PRECISION:-highest}" \
  --variants grid --variant-configs medium \
  --quiet-wait 2 --max-redos 1 \
  --out "$OUT_DIR" "$@" 2>&1 | tee "$OUT_DIR/log.txt" || status=$?

if [[ $status == 124 ]]; then
  echo "gpu.sh: stopped after ${BENCH_TIMEOUT:-290} s; the groups finished so far are saved"
fi

# optional: scan vs Newton (DEER) vs quasi-Newton over T and H (benchmarks/newton.py)
if [[ "${BENCH_NEWTON:-0}" == "1" ]]; then
  timeout --signal=INT "${BENCH_NEWTON_TIMEOUT:-300}" "$PY" benchmarks/newton.py \
    --T 1024 4096 16384 65536 --H 8 32 64 --suffix _gpu --out "$OUT_DIR" \
    2>&1 | tee "$OUT_DIR/newton_log.txt" || true
fi
# optional: sequential vs associative scan for Griffin's RG-LRU (benchmarks/linear_scan.py)
# and xLSTM's mLSTM (benchmarks/mlstm_parallel.py)
if [[ "${BENCH_MODERN:-0}" == "1" ]]; then
  mkdir -p "$OUT_DIR/modern"
  timeout --signal=INT "${BENCH_MODERN_TIMEOUT:-300}" "$PY" benchmarks/linear_scan.py \
    --cells rglru --steps 256,4096,16384 --out "$OUT_DIR/modern" \
    2>&1 | tee "$OUT_DIR/modern_log.txt" || true
  timeout --signal=INT "${BENCH_MODERN_TIMEOUT:-300}" "$PY" benchmarks/mlstm_parallel.py \
    --steps 256,4096,16384 --out "$OUT_DIR/modern" \
    2>&1 | tee "$OUT_DIR/mlstm_parallel_log.txt" || true
fi
echo "results: $OUT_DIR/results.json, $OUT_DIR/results.md"
exit "$status"
