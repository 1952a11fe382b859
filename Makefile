# make demo: generated data -> train -> quantize to int8 -> evaluate it -> run the station on a video
# make test: the whole test suite (all extras)
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: demo test bench bench-web clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: setup.py | $(BIN)/python
	$(BIN)/pip install -q -e ".[edge,train,dev]"
	touch $@

DEMO = runs/demo

demo: $(VENV)/.installed
	$(BIN)/python -m training.synthetic --out $(DEMO)/data --images 60 --video $(DEMO)/line.avi --frames 120
	$(BIN)/station train --data $(DEMO)/data --out $(DEMO)/model --input-size 64 --base-filters 8 --depth 3 \
		--epochs 12 --epoch-size 256 --lr 3e-3 --verbose 2
	$(BIN)/station quantize --model $(DEMO)/model/model.keras --calib $(DEMO)/data --out $(DEMO)/tflite --calib-images 60
	$(BIN)/station eval --model $(DEMO)/tflite/model_int8.tflite --data $(DEMO)/data --json $(DEMO)/eval_int8.json
	$(BIN)/station run --config config.yaml --bench-invoke 50

# The daemon benchmark of the README: a 256x256 int8 model (one epoch on synthetic data: speed,
# not accuracy), 2 threads, on a 256x256 video as fast as it decodes, then paced at 30 fps for the
# latency, then on a 1920x1080 video in 256x256 tiles. Each run's summary gives its peak RSS.
BENCH = runs/bench
RUN_BENCH = $(BIN)/station run --config config.yaml --model $(BENCH)/tflite/model_int8.tflite \
	--set model.threads=2 --set output.results_log=$(BENCH)/results.jsonl --set output.overlays_dir=null

bench: $(VENV)/.installed
	$(BIN)/python -m training.synthetic --out $(BENCH)/data --images 30 --height 256 --width 256 \
		--video $(BENCH)/line256.avi --frames 600 --fps 30
	$(BIN)/python -m training.synthetic --video $(BENCH)/line1080.avi --frames 60 --height 1080 --width 1920
	$(BIN)/station train --data $(BENCH)/data --out $(BENCH)/model --input-size 256 --epochs 1 --epoch-size 32 --verbose 0
	$(BIN)/station quantize --model $(BENCH)/model/model.keras --calib $(BENCH)/data --out $(BENCH)/tflite \
		--formats int8 --calib-images 20 --max-drop 1
	$(RUN_BENCH) --source $(BENCH)/line256.avi --set source.realtime=false --bench-invoke 200
	$(RUN_BENCH) --source $(BENCH)/line256.avi --set source.realtime=true --bench-invoke 200
	$(RUN_BENCH) --source $(BENCH)/line1080.avi --set source.realtime=false --bench-invoke 20

# The operator page and MQTT cost (README, "Operator page, metrics and MQTT"): `station run` on the
# bench's 256x256 video with the page watched by a client and MQTT into a local mosquitto, against
# both off, interleaved. Needs mosquitto (apt-get install mosquitto); makes the bench model if missing.
bench-web: $(VENV)/.installed
	test -f $(BENCH)/tflite/model_int8.tflite -a -f $(BENCH)/line256.avi || $(MAKE) bench
	$(BIN)/python -m edge.web_bench --model $(BENCH)/tflite/model_int8.tflite --video $(BENCH)/line256.avi --rounds 5

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) runs build *.egg-info
