# Two commands set up everything on a fresh machine:
#   make demo   - create .venv, install, train TD3 on Pendulum-v1 for about two minutes
#   make test   - create .venv if needed, install, run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench-speed lint clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned: 2.13.0 is a CPU build from local files; unpinned torch pulls CUDA.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev,bench]"
	# Procgen (envs/procgen.py): procgen2 0.10.7 is the maintained cp311 wheel (import name
	# procgen). Its metadata pins numpy<2 and gym<1.0, and gym3's pins numpy<2, while minari
	# needs numpy>=2; the pins are metadata only (the games, levels and state save/restore run
	# with numpy 2.4.6), so these three are installed with --no-deps, deliberately overriding
	# them, and pip's resolver prints a conflict note on later installs. What they import at
	# import time is installed normally: cffi (gym3's C interface; <2 as gym3 asks), imageio,
	# cloudpickle, filelock. Left out: gym3's moderngl and imageio-ffmpeg (its viewer and video
	# recorder only) and gym's gym-notices (optional in gym; it only prints a notice). The wheel
	# exists for CPython 3.11 only: elsewhere this step says so and the Procgen tests skip.
	if $(BIN)/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then \
		$(BIN)/pip install -q "cffi>=1.13,<2" imageio cloudpickle filelock && \
		$(BIN)/pip install -q --no-deps procgen2==0.10.7 gym3==0.3.3 gym==0.26.2; \
	else echo "procgen not installed: procgen2 0.10.7 needs Python 3.11"; fi
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python train.py --config configs/td3/demo.yaml --run-dir runs/demo-$$(date +%Y%m%d-%H%M%S)

# One pytest worker per core (pytest-xdist), whole files per worker so that a module's
# shared fixtures are built once: about half the single-process time on 2 cores.
test: $(STAMP)
	$(BIN)/python -m pytest tests -n auto --dist loadfile

bench-speed: $(STAMP)
	for algo in td3 sac tqc; do $(BIN)/python bench/speed.py --algo $$algo --mode update; done

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) runs
