#!/usr/bin/env bash
# Packs what bench/gpu.sh needs on a GPU worker that has PyTorch but no network and no checkout of ../shared:
# wheels of the packages such an image usually lacks (trimesh, PyMCubes), the shared inputs the benchmark
# reads (official config.yaml, the flor photo and mesh) and the fitted benchmark field if bench/cache has it.
# Everything goes to .gpu/ (git-ignored, a few MB); bench/gpu.sh installs and uses it when it is there.
#   bash bench/gpu_bundle.sh                 # wheels for the worker's Python, 3.12 by default
#   PYVER=3.11 bash bench/gpu_bundle.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
SHARED=${ASSET3D_SHARED:-../shared}
PYVER=${PYVER:-3.12}
rm -rf .gpu && mkdir -p .gpu/whl .gpu/shared/triposr .gpu/shared/meshes .gpu/shared/photos .gpu/cache
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
versions=$("$PY" -c 'from importlib.metadata import version; print(" ".join(f"{n}=={version(n)}" for n in ("trimesh", "PyMCubes")))')
# shellcheck disable=SC2086
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp "${platforms[@]}" \
  -d .gpu/whl $versions
cp "$SHARED/triposr/config.yaml" .gpu/shared/triposr/
cp "$SHARED/meshes/triposr_flor.obj" .gpu/shared/meshes/
cp "$SHARED/photos/flor.png" .gpu/shared/photos/
cp bench/cache/*.pt .gpu/cache/ 2>/dev/null || echo "no fitted field in bench/cache: the GPU run fits it (seconds there)"
du -sh .gpu
echo "device run: carry [\".gpu\"], command: bash bench/gpu.sh   (writes its table and JSON to \$OUT too)"
