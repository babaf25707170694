# vchar: two commands set everything up: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ASSETS := bots/studio/static/vendor/htmx.min.js

.PHONY: install run test bench clean

$(STAMP): pyproject.toml
	sh scripts/system-deps.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	# resemblyzer's speaker encoder (voice similarity): its webrtcvad pin needs a compiler,
	# so it goes in without deps (webrtcvad-wheels and librosa come from the test extra).
	$(PY) -m pip install --quiet --no-deps resemblyzer==0.1.4
	# mediapipe 0.10.21 is the last release whose wheel carries the face-mesh model; it declares
	# numpy<2 and protobuf<5, yet runs on numpy 2.4 and protobuf 6.31 (checked here), so it goes
	# in without deps and its real runtime deps come from pyproject.toml.
	$(PY) -m pip install --quiet --no-deps mediapipe==0.10.21
	touch $(STAMP)

# the studio's front-end libraries, pinned in bots/studio/package-lock.json
$(ASSETS): bots/studio/package-lock.json
	sh scripts/studio-assets.sh

install: $(STAMP) $(ASSETS)

run: $(STAMP) $(ASSETS)
	$(VENV)/bin/vchar run

test: $(STAMP) $(ASSETS)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/turn.py
	$(PY) bench/adapters.py
	$(PY) bench/voice_similarity.py
	$(PY) bench/voice_speed.py
	$(PY) bench/image_speed.py

clean:
	rm -rf $(VENV) build *.egg-info bots/studio/node_modules bots/studio/static/vendor
