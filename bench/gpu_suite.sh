#!/usr/bin/env bash
# The GPU numbers in one call (about 14 minutes on one H100/H200), on a machine that has a CUDA torch
# and nothing of ours: bench/gpu_suite.sh [WORKDIR]
#
# 1. installs vlsearch from this tree (set VLSEARCH_WHEELS=DIR to install offline from wheels there);
# 2. builds a random-weight checkpoint with the real Qwen3-VL-2B shapes in WORKDIR (bfloat16, once);
# 3. prints: embed images/s with ~1,280-token images (padded path, packed, packed + batch-invariant),
#    rerank pairs/s for top-100 (50 texts, 50 images) against one pair per forward, the token
#    efficiency, peak GPU memory and an operator profile of one batch (bench_models.py --gpu-suite);
#    the bf16 invariance figures (bench_invariance.py); 16 HTTP clients against the library in-process
#    (bench_server.py); the Embedding-2B and Reranker-2B shapes served together in float32 and bf16:
#    peak host RSS, index pages/min and images/min, search latency and bf16's fidelity (bench_realsize.py).
# Each step has its own time limit, so one that stalls does not take the others' time.
set -uo pipefail
cd "$(dirname "$0")/.."
work="${1:-${TMPDIR:-/tmp}/vlsearch-gpu}"
mkdir -p "$work"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

if ! python -c "import vlsearch" 2>/dev/null; then
  python -m pip install -q ${VLSEARCH_WHEELS:+--no-index --find-links "$VLSEARCH_WHEELS"} -e . \
    || { echo "gpu_suite: installing vlsearch failed"; exit 1; }
fi
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('torch', torch.__version__)" || exit 1

status=0
step() {  # step SECONDS NAME COMMAND...: run with a time limit, keep going on failure
  local limit=$1 name=$2; shift 2
  echo; echo "=== $name"
  timeout "$limit" "$@" || { echo "gpu_suite: $name failed or ran out of time (status $?)"; status=1; }
}
ckpt="$work/vl2b"
step 240 "embed and rerank throughput (2B shapes, bf16)" \
  python bench/bench_models.py --gpu-suite --checkpoint "$ckpt" --repeats 2 --stages model,e2e \
    --profile "$work/profile.txt" --json "$work/models.json"
step 120 "bf16 batch invariance" \
  python bench/bench_invariance.py --checkpoint "$ckpt" --device cuda --dtype bfloat16 --json "$work/invariance.json"
step 120 "server: 16 clients against the library in-process" \
  python bench/bench_server.py --checkpoint "$ckpt" --device cuda --dtype bfloat16 --kinds image \
    --rounds 3 --sequential 64 --per-client 16 --torch-threads 0 --json "$work/server.json"
step 420 "the 2B pair at full size: server memory, index pages/min and images/min, search latency" \
  python bench/bench_realsize.py --checkpoint "$work/vl2b-pair" --device cuda --modes float32,bfloat16 \
    --pages 16 --images 16 --searches 3 --json "$work/realsize.json"
echo; echo "results: $work/{models,invariance,server,realsize}.json and $work/profile.txt"
exit $status
