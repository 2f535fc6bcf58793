# The build of a scheduled function that runs one module of the lab (infra/tailor_lab/training/$(LAB_MODULE)),
# which no layer carries: no training code ships to the functions that serve. A function's Makefile sets
# LAB_MODULE and UNUSED, includes this file and has its `sam build` target run $(build_lab_function): its handler,
# that module, and the libraries it alone needs as wheels for Lambda's python3.12 on x86_64. numpy, onnxruntime
# and the domain library come from the layers, so the wheels are taken without their dependencies:
# requirements.txt lists every one the module needs.

PYTHON ?= python3
# sam builds in a copy of the function's folder, so the lab is found from this file's own place.
LAB := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))../infra/tailor_lab)
GLIBC_MINORS = 34 33 32 31 30 29 28 27 26 25 24 23 22 21 20 19 18 17
PLATFORMS = $(foreach minor,$(GLIBC_MINORS),manylinux_2_$(minor)_x86_64) manylinux2014_x86_64

# UNUSED: packages the module never imports, left out to keep the function and its layers under Lambda's 250 MB.
define build_lab_function
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --no-warn-conflicts --no-compile --no-deps \
		$(addprefix --platform ,$(PLATFORMS)) --python-version 3.12 --implementation cp \
		--only-binary=:all: --target $(ARTIFACTS_DIR) -r requirements.txt
	cd $(ARTIFACTS_DIR) && rm -rf $(UNUSED)
	find $(ARTIFACTS_DIR) -type d \( -name __pycache__ -o -name tests -o -name test \) -prune -exec rm -rf {} +
	mkdir -p $(ARTIFACTS_DIR)/tailor_lab/training
	cp $(LAB)/__init__.py $(ARTIFACTS_DIR)/tailor_lab/
	cp $(LAB)/training/__init__.py $(LAB)/training/$(LAB_MODULE) $(ARTIFACTS_DIR)/tailor_lab/training/
	cp *.py $(ARTIFACTS_DIR)/
endef
