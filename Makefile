# make demo: train, evaluate a small model on generated data (edge + train extras)
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

demo: $(VENV)/.installed
	$(BIN)/python -m training.synthetic --out runs/demo/data --images 60
	$(BIN)/station train --data runs/demo/data --out runs/demo/model --input-size 128 --epochs 8 --epoch-size 256 --verbose 2
	$(BIN)/station eval --model runs/demo/model/model.keras --data runs/demo/data --json runs/demo/eval.json

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) runs build *.egg-info
