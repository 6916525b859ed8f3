#!/usr/bin/env bash
# Build, on a machine with a package index, what bench/gpu_check.sh needs on an offline GPU machine
# whose Python (3.12 here) has its own CUDA torch but not our pinned stack; split it to fit transfers.
#
#   bash bench/gpu_bundle.sh OUT ARTIFACT CONLL [PART_MB]
#
# OUT/bundle.tar.xz holds site/ (onnxruntime-gpu 1.31.1 without its C-API library and TensorRT
# provider, bentoml and its closure, tokenizers, transformers/optimum/seqeval for the tests; numpy
# and huggingface-hub 1.x left to the machine), art/ (the artifact's small files and its fp16 model)
# and conll/ (test and dev splits); OUT/part0, part1, ... are its pieces (default 61 MiB each).
# On the GPU machine, with the parts appended into /tmp/blob and this checkout as the working folder:
#
#   mkdir -p /tmp/b && xz -T0 -dc /tmp/blob | tar xf - -C /tmp/b
#   ln -sfn "$(python3 -c 'import nvidia; print(list(nvidia.__path__)[0])')" /tmp/b/site/nvidia  # CUDA 13 + cuDNN 9 wheels
#   PYTHONPATH=/tmp/b/site:$PWD BENTOML_DO_NOT_TRACK=True bash bench/gpu_check.sh /tmp/b/art /tmp/b/conll "$OUT"
#
# The symlink puts the machine's NVIDIA wheels beside onnxruntime, where onnxruntime.preload_dlls()
# looks for them, as in the bento image. Results: docs/benchmarks.md, "GPU".
set -eu
OUT=${1:?output folder}
ART=${2:?artifact folder}
DATA=${3:?CoNLL folder}
PART_MB=${4:-61}
PY=${PYTHON:-python3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYVER=${PYVER:-3.12}
PLAT=(--python-version "$PYVER" --implementation cp --only-binary=:all:)
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_26_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
         manylinux_2_12_x86_64 manylinux2010_x86_64 manylinux_2_5_x86_64 manylinux1_x86_64; do PLAT+=(--platform "$p"); done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/wheels" "$work/b/art" "$work/b/conll" "$OUT"
"$PY" -m pip download -q "${PLAT[@]}" -d "$work/wheels" bentoml==1.4.40 uvloop==0.23.0 httptools==0.9.0 \
    tokenizers==0.22.2 pyyaml rich
"$PY" -m pip download -q --no-deps "${PLAT[@]}" -d "$work/wheels" onnxruntime-gpu==1.31.1 transformers==4.57.6 \
    optimum==2.1.0 optimum-onnx==0.1.0 huggingface_hub==0.36.2
"$PY" -m pip wheel -q --no-deps -w "$work/wheels" seqeval==1.2.2  # an sdist on PyPI: pure Python
rm -f "$work"/wheels/numpy-* "$work"/wheels/hf_xet-* "$work"/wheels/huggingface_hub-1.*
"$PY" -m pip install -q --no-deps --no-compile "${PLAT[@]}" --target "$work/b/site" "$work"/wheels/*.whl
rm -rf "$work"/b/site/onnxruntime/capi/libonnxruntime.so.* "$work"/b/site/onnxruntime/capi/libonnxruntime_providers_tensorrt.so \
       "$work/b/site/bin"
find "$ART" -maxdepth 1 -type f ! -name '*.onnx' -exec cp {} "$work/b/art/" \;
cp "$ART/model_fp16.onnx" "$work/b/art/"
for split in test valid dev; do
    if [ -f "$DATA/$split.txt" ]; then cp "$DATA/$split.txt" "$work/b/conll/"; fi
done
(cd "$work/b" && tar cf - site art conll) | xz -9 -T0 > "$OUT/bundle.tar.xz.tmp"
mv "$OUT/bundle.tar.xz.tmp" "$OUT/bundle.tar.xz"
rm -f "$OUT"/part*
split -b "${PART_MB}M" -d -a 1 "$OUT/bundle.tar.xz" "$OUT/part"
ls -l "$OUT"
echo "bundle for $ROOT's gpu_check.sh: $(du -h "$OUT/bundle.tar.xz" | cut -f1), $(ls "$OUT"/part* | wc -l) parts"
