# SCL DeepLab: set-up, tests, demo, benchmark and packaging.
# Everything a fresh Debian 12 (bookworm) or Debian 13 (trixie) machine needs is installed by `make setup` (as root).

SHELL := /bin/bash
ROOT := $(abspath .)
VENV := $(ROOT)/.venv
PY := $(VENV)/bin/python
PLUGINS := $(VENV)/plugins
# The venv's site-packages, whatever the system Python's version (3.11 on Debian 12, 3.13 on Debian 13).
SITE = $(shell $(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
# The same package names on both tested releases (VERSION_CODENAME); APT_PACKAGES_<codename> adds to them
# where a release differs. Another release gets a warning and this list.
DEBIAN_RELEASE := $(shell . /etc/os-release 2>/dev/null && echo $$VERSION_CODENAME)
SUPPORTED_RELEASES := bookworm trixie
APT_PACKAGES := qgis python3-qgis qgis-providers python3-rasterio python3-matplotlib python3-venv xvfb \
	$(APT_PACKAGES_$(DEBIAN_RELEASE))
export QT_QPA_PLATFORM := offscreen

.PHONY: setup apt venv link test test-debian13 test-debian12 demo bench accuracy package clean

setup: apt venv link

apt:
	@case " $(SUPPORTED_RELEASES) " in *" $(DEBIAN_RELEASE) "*) ;; \
		*) echo "Warning: '$(DEBIAN_RELEASE)' is not a tested release (tested: $(SUPPORTED_RELEASES)); trying anyway." >&2;; esac
	@if ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
		echo "Installing QGIS and system packages (apt)..."; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES); \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt
	@test -x $(PY) || /usr/bin/python3 -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -r requirements.txt -r requirements-dev.txt
	touch $@

# The repository root is the plugin folder; QGIS and Python find it as `scl_deeplab`
# through a link kept outside the tree.
link: venv
	@mkdir -p $(PLUGINS)
	@ln -sfn $(ROOT) $(PLUGINS)/scl_deeplab
	@echo $(PLUGINS) > "$(SITE)/scl_deeplab_plugin.pth"

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

# The same `make setup` and `make test` in a fresh Debian 13 (QGIS 3.40 LTR, Python 3.13) or Debian 12 chroot,
# as root; not part of CI: the first run downloads several GB and leaves 9 GB under /var/tmp.
# PYTEST_ARGS picks tests.
test-debian13:
	RELEASE=trixie PYTEST_ARGS="$(PYTEST_ARGS)" scripts/test-debian.sh

test-debian12:
	RELEASE=bookworm PYTEST_ARGS="$(PYTEST_ARGS)" scripts/test-debian.sh

# The whole workflow headless through qgis_process; DATA=<L2A .SAFE/.zip> or DATA=<image.tif>,<scl.tif>
# runs it on your own scene. SIZE, PATCH_SIZE, HEAD_EPOCHS, FINETUNE_EPOCHS make it bigger.
demo: setup
	$(PY) scripts/demo.py

# QUICK=1: the short version (its report ends with each section's seconds); AVX2=1: torch and ONNX Runtime held to AVX2 (bench/isa.py).
bench: setup
	$(PY) bench/run.py $(if $(QUICK),--quick,) $(if $(AVX2),--avx2,) $(if $(MODEL),--model $(MODEL),)

# Train on some scenes, score on others, beside the majority class and a colour lookup (bench/accuracy.py).
# TRAIN=list VAL=list: scene lists (one image,scl pair a line); without them sample scenes. MINUTES bounds training.
# ARGS: further options of bench/accuracy.py (--help lists them), e.g. ARGS="--patch-size 256".
accuracy: setup
	$(PY) bench/accuracy.py $(if $(TRAIN),--train $(TRAIN),) $(if $(VAL),--val $(VAL),) --minutes $(or $(MINUTES),20) $(ARGS)

VERSION := $(shell sed -n 's/^version=//p' metadata.txt)
package:
	@mkdir -p dist
	git archive --format=zip --prefix=scl_deeplab/ -o dist/scl_deeplab-$(VERSION).zip HEAD
	@echo "Built dist/scl_deeplab-$(VERSION).zip (from the last commit)"

clean:
	rm -rf $(VENV) dist demo_output bench/results.json
