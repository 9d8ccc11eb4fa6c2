#!/usr/bin/env bash
# The model benchmark on a CUDA device, in one call: bf16, batch 1 and 8, eager and torch.compile.
# Prints a markdown table (for docs/performance.md) and leaves the JSON under bench/out/.
#   bash bench/gpu.sh            # needs a CUDA torch in .venv (or python3 on PATH)
#   bash bench/gpu_bundle.sh     # first, here: packs .gpu/ for a worker without network or ../shared
set -euo pipefail
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
mkdir -p bench/out
if [ -d .gpu ]; then  # the bundle from bench/gpu_bundle.sh: a worker without network or ../shared
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/asset3d-site .gpu/whl/*.whl
  export PYTHONPATH=/tmp/asset3d-site${PYTHONPATH:+:$PYTHONPATH}
  export ASSET3D_SHARED=$PWD/.gpu/shared
  mkdir -p bench/cache && cp -n .gpu/cache/*.pt bench/cache/ 2>/dev/null || true
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -c 'import torch; assert torch.cuda.is_available(), "no CUDA device visible to torch"; print(torch.__version__, torch.version.cuda)'
"$PY" bench/model.py --device cuda --batch 8 --repeats 5 --json bench/out/gpu_eager.json > /dev/null
# compilation can take minutes: bounded, so that the eager table still comes back inside one device call
timeout "${COMPILE_TIMEOUT_S:-300}" "$PY" bench/model.py --device cuda --batch 8 --repeats 5 --compile \
  --json bench/out/gpu_compile.json > /dev/null || echo "torch.compile run failed or passed ${COMPILE_TIMEOUT_S:-300} s" >&2
"$PY" - <<'PY' | tee bench/out/gpu_table.md
import json, pathlib
rows = [("metric", "eager", "compile")]
runs = {}
for name in ("eager", "compile"):
    p = pathlib.Path(f"bench/out/gpu_{name}.json")
    runs[name] = json.loads(p.read_text()) if p.exists() else {}
keys = ["gpu", "matmul_fp32_gflops", "matmul_bf16_gflops", "forward_s_b1_fp32", "forward_s_b1_bf16",
        "forward_s_per_image_b4", "bf16_scene_codes_rel_err", "extract_dense_s_256", "extract_sparse_s_256",
        "queries_sparse_256", "image_to_mesh_s_b1", "images_per_s_b8", "cuda_peak_mem_mb"]
def fmt(v):
    return f"{v:.4g}" if isinstance(v, float) else str(v)
print("| " + " | ".join(rows[0]) + " |")
print("|---|---|---|")
for k in keys:
    print(f"| {k} | {fmt(runs['eager'].get(k, '-'))} | {fmt(runs['compile'].get(k, '-'))} |")
PY
if [ -n "${OUT:-}" ]; then cp bench/out/gpu_*.json bench/out/gpu_table.md "$OUT"/ 2>/dev/null || true; fi
