# make demo: the station with its bundled int8 model on a generated conveyor video, a PLC stand-in as the gate
# make test: the whole test suite: the training set (tests/training) in .venv with every extra, then the
#            device tests (everything else) in .venv-edge with only what a device installs (make test-edge)
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: demo install default-model test test-train test-edge bench bench-web soak clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: setup.py | $(BIN)/python
	$(BIN)/pip install -q -e ".[edge,train,dev]"
	touch $@ $(VENV)/.installed-edge

$(VENV)/.installed-edge: setup.py | $(BIN)/python
	$(BIN)/pip install -q -e ".[edge]"
	touch $@

install: $(VENV)/.installed

# The demo needs only what a device installs (the edge extra): the bundled model, a conveyor video
# made by the surface generator, the daemon, and a PLC stand-in on a pseudo-terminal.
DEMO = runs/demo

demo: $(VENV)/.installed-edge
	$(BIN)/python -m training.surfaces --video $(DEMO)/line.avi --frames 450 --fps 15 --seed 7
	$(BIN)/station demo --config config.yaml

# How the bundled model (edge/inference/models/surfaces_int8.tflite) was made: 1500 of the generator's images
# and the README recipe (config.yaml: Attention U-Net, base 8, 128x128 crops, 30 minutes for the whole command, an
# image threshold for every defective val image) with an average of the weights (--ema 0.99) and a 2 %
# false-reject budget instead of 5 %, int8 with verified accuracy (docs/training.md: why these two).
MODEL = runs/default_model
default-model: $(VENV)/.installed
	$(BIN)/python -m training.surfaces --out $(MODEL)/data --images 1500
	$(BIN)/station train --config config.yaml --data $(MODEL)/data --out $(MODEL)/train --verbose 2 --ema 0.99 --false-reject-budget 0.02
	$(BIN)/station quantize --model $(MODEL)/train/model.keras --calib $(MODEL)/data --out $(MODEL)/tflite --keep-float LOGISTIC
	# the card holds the model file's SHA-256: the two are copied together, or the station refuses them
	cp $(MODEL)/tflite/model_int8.tflite edge/inference/models/surfaces_int8.tflite
	cp $(MODEL)/tflite/model_int8.json edge/inference/models/surfaces_int8.json

# The daemon benchmark (docs/benchmarks.md): a 256x256 int8 model (one epoch on synthetic data: speed,
# not accuracy), 2 threads, on a 256x256 video as fast as it decodes, then paced at 30 fps for the
# latency, then on a 1920x1080 video in 256x256 tiles; the device variant (depthwise separable,
# base 8) in 256x256 tiles and as one 1088x1920 tile, on LiteRT and OpenVINO, with one and two streams; each runtime's
# multiply-accumulate rate against this CPU's peak; then reject timing on the whole station (the
# demo), idle and with four CPU-bound processes beside it. Each run's summary gives its peak RSS.
BENCH = runs/bench
RUN_ON = $(BIN)/station run --config config.yaml --set gate.driver=log --set model.threads=2 \
	--set output.results_log=$(BENCH)/results.jsonl --set output.overlays_dir=null --model
RUN_BENCH = $(RUN_ON) $(BENCH)/tflite/model_int8.tflite
QUANTIZE_BENCH = --calib $(BENCH)/data --formats int8 --max-drop 1 --keep-float LOGISTIC

bench: $(VENV)/.installed
	$(BIN)/python -m training.surfaces --out $(BENCH)/data --images 30 --height 256 --width 256 \
		--video $(BENCH)/line256.avi --frames 600 --fps 30
	$(BIN)/python -m training.surfaces --video $(BENCH)/line1080.avi --frames 60 --height 1080 --width 1920
	$(BIN)/station train --data $(BENCH)/data --out $(BENCH)/model --input-size 256 --epochs 1 --epoch-size 32 --verbose 0
	$(BIN)/station quantize --model $(BENCH)/model/model.keras --calib $(BENCH)/data --out $(BENCH)/tflite \
		--formats int8 --calib-images 20 --max-drop 1
	$(RUN_BENCH) --source $(BENCH)/line256.avi --set source.realtime=false --bench-invoke 200
	$(RUN_BENCH) --source $(BENCH)/line256.avi --set source.realtime=true --bench-invoke 200
	$(RUN_BENCH) --source $(BENCH)/line1080.avi --set source.realtime=false --bench-invoke 20
	# the device variant on the same 1080p frames: 45 tiles of 256, then one tile of 1088x1920
	$(BIN)/station train --data $(BENCH)/data --out $(BENCH)/model_ds --arch attention_unet_ds --base-filters 8 \
		--input-size 256 --epochs 1 --epoch-size 32 --verbose 0
	$(BIN)/station quantize --model $(BENCH)/model_ds/model.keras --out $(BENCH)/tflite_ds $(QUANTIZE_BENCH) --calib-images 20
	$(BIN)/station quantize --model $(BENCH)/model_ds/model.keras --out $(BENCH)/tflite_ds1080 $(QUANTIZE_BENCH) \
		--calib-images 4 --input-size 1088x1920
	$(RUN_ON) $(BENCH)/tflite_ds/model_int8.tflite --source $(BENCH)/line1080.avi --set source.realtime=false --bench-invoke 20
	$(RUN_ON) $(BENCH)/tflite_ds1080/model_int8.tflite --source $(BENCH)/line1080.avi --set source.realtime=false --bench-invoke 20
	$(RUN_ON) $(BENCH)/tflite_ds1080/model_int8.tflite --source $(BENCH)/line1080.avi --set source.realtime=false \
		--set model.runtime=openvino --bench-invoke 20
	# the same with two frames inferred at once, each on an interpreter of one thread (model.streams)
	$(RUN_ON) $(BENCH)/tflite_ds1080/model_int8.tflite --source $(BENCH)/line1080.avi --set source.realtime=false \
		--set model.streams=2 --bench-invoke 20
	$(RUN_ON) $(BENCH)/tflite_ds1080/model_int8.tflite --source $(BENCH)/line1080.avi --set source.realtime=false \
		--set model.runtime=openvino --set model.streams=2 --bench-invoke 20
	# the runtimes side by side, and the int8 peak: a file of matrix products alone (quantize/peak.py)
	$(BIN)/python -m quantize.peak --out $(BENCH)/peak
	$(BIN)/station bench --model $(BENCH)/peak/gemm_int8.tflite --model $(BENCH)/tflite/model_int8.tflite \
		--model $(BENCH)/tflite_ds1080/model_int8.tflite --runtime litert,openvino --threads 2 --runs 20 \
		--json $(BENCH)/runtimes.json --report $(BENCH)/runtimes.md
	# reject timing on the whole station: the demo, idle, then with four CPU-bound processes beside it
	test -f $(DEMO)/line.avi || $(BIN)/python -m training.surfaces --video $(DEMO)/line.avi --frames 450 --fps 15 --seed 7
	$(BIN)/station demo --config config.yaml
	$(BIN)/station demo --config config.yaml --load 4

# The operator page and MQTT cost (docs/operator-page.md): `station run` on the
# bench's 256x256 video with the page watched by a client and MQTT into a local mosquitto, against
# both off, interleaved. Needs mosquitto (apt-get install mosquitto); makes the bench model if missing.
bench-web: $(VENV)/.installed
	test -f $(BENCH)/tflite/model_int8.tflite -a -f $(BENCH)/line256.avi || $(MAKE) bench
	$(BIN)/python -m edge.tools.web_bench --model $(BENCH)/tflite/model_int8.tflite --video $(BENCH)/line256.avi --rounds 5

# The fault soak (docs/faults.md): the station on the demo video served as an MJPEG camera for
# SOAK_MINUTES, with the camera frozen and killed, the PLC killed, the disk filled (a tmpfs, as
# root) and the page flooded, every two minutes; prints the invariant's figures and RSS drift.
SOAK_MINUTES ?= 30
soak: $(VENV)/.installed-edge
	test -f runs/soak/line.avi || $(BIN)/python -m training.surfaces --video runs/soak/line.avi --frames 900 --fps 15 --seed 11
	$(BIN)/station soak --video runs/soak/line.avi --minutes $(SOAK_MINUTES)

# The tests are in two sets. tests/training needs the train extra (Keras, TensorFlow): it trains a small
# model and quantizes it once a session, tests training, quantization and the Keras side, and checks that
# the device's code never imports TensorFlow where it is installed. Every other test is a device test:
# it runs on the bundled int8 model with what a device installs. `make test-edge` runs those in a venv
# of their own with the edge extra and the dev extra (pytest, and what the device tests drive: paho-mqtt,
# pymodbus, selenium), and never TensorFlow or Keras, which it checks: a device test or an edge module
# that needs either fails there (tests/conftest.py does not collect tests/training where Keras is not
# installed). `make test` runs each test once: the training set in .venv, the device tests in
# .venv-edge, and lists each set's eight slowest tests (the whole suite should stay under 10 minutes).
# (`.venv/bin/python -m pytest tests` runs both sets in .venv.)
EDGE_VENV ?= .venv-edge
EDGE_BIN = $(EDGE_VENV)/bin
NO_TENSORFLOW = import importlib.util, sys; found = [m for m in ("tensorflow", "keras", "jax") if importlib.util.find_spec(m)]; \
	sys.exit(f"$(EDGE_VENV) is not what a device installs: it has {found}" if found else 0)

$(EDGE_BIN)/python:
	$(PYTHON) -m venv $(EDGE_VENV)
	$(EDGE_BIN)/pip install -q --upgrade pip

# PyGObject (for the Aravis camera tests) builds only over the system's gobject-introspection and
# cairo development files (.ci/run installs them as root); without them those tests are skipped.
$(EDGE_VENV)/.installed: setup.py | $(EDGE_BIN)/python
	$(EDGE_BIN)/pip install -q -e ".[edge,dev]"
	if pkg-config --exists gobject-introspection-1.0 cairo 2>/dev/null; then $(EDGE_BIN)/pip install -q "pygobject<3.50"; fi
	$(EDGE_BIN)/python -c '$(NO_TENSORFLOW)'
	touch $@

test-train: $(VENV)/.installed
	$(BIN)/python -m pytest -q --durations=8 tests/training

test-edge: $(EDGE_VENV)/.installed
	$(EDGE_BIN)/python -m pytest -q --durations=8 tests

test: test-train test-edge

clean:
	rm -rf $(VENV) $(EDGE_VENV) runs build *.egg-info
