# make demo: generated data -> train -> quantize to int8 -> evaluate it -> run the station on a video
# make test: the whole test suite (all extras)
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: demo test clean

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

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) runs build *.egg-info
