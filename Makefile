# Kiln's entry points. `make test` and `make demo` each install what is missing and build
# first, so each works alone on a fresh Debian 12 machine.
SHELL := /bin/bash
BUILD_DIR ?= build
PRESET ?= release
JOBS ?= $(shell nproc)
# Where `make deps` installs Temporal's TypeScript SDK (npm), outside any one preset's tree.
TEMPORAL_SDK_DIR := $(BUILD_DIR)/deps/temporal

# Everything the build, the tests and the demo need, from Debian 12's archive.
PACKAGES := build-essential cmake ninja-build pkg-config ccache clang clang-format clang-tidy \
	libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev \
	librocksdb-dev libgit2-dev prometheus-cpp-dev libcivetweb-dev catch2 libcli11-dev libssl-dev libjemalloc-dev \
	git curl procps openssl tmux file dpkg-dev \
	podman runc conmon docker-registry busybox-static \
	qemu-system-x86 cpio e2fsprogs \
	chromium nodejs postgresql-15 libpq-dev
# podman/runc/conmon: the builder agent's image builds (runc satisfies podman's "crun | runc", and
# crun fails on hybrid cgroup hosts; root with native overlay needs neither uidmap,
# fuse-overlayfs nor slirp4netns; containernetworking-plugins comes with podman and is enough for
# --network=none/host). docker-registry and busybox-static: a registry and a base image for tests.
# clang: the libFuzzer targets (make fuzz, and the short run at the end of make test).
# file, dpkg-dev: make package (CPack finds the binaries' library dependencies with file and
# dpkg-shlibdeps) and its test.
# qemu-system-x86, cpio, e2fsprogs: the microvm machine provider, its builder image (make
# builder-image) and the volumes it formats; busybox-static also forwards the guests' ports.
# postgresql-15, libpq-dev: the PostgreSQL store (libpq) and the clusters its tests start
# (initdb and pg_ctl from /usr/lib/postgresql/15/bin).
# tmux: the terminal test of what `kiln` shows a person (tests/integration/cli_terminal_test.cc).
# chromium, nodejs (and npm, below): the web console's browser test (tests/browser), headless
# Chromium driven by puppeteer-core, which the test installs from its package-lock.json with
# `npm ci` into the build tree (it says it is skipped when offline).
# nodejs and npm also install and run Temporal's TypeScript SDK (below, and tests/temporal).

.PHONY: all deps build test fuzz demo package builder-image format format-check lint clean

all: build

# Installs only the packages not already installed; as root (sudo when available).
deps:
	@missing=$$(for p in $(PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing $$missing"; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing && \
	  if echo " $$missing " | grep -q ' docker-registry ' && [ -d /run/systemd/system ]; then \
	    echo "deps: stopping the docker-registry service the package started (tests run their own on 127.0.0.1)"; \
	    $$SUDO systemctl disable --now docker-registry >/dev/null 2>&1 || true; \
	  fi; \
	else \
	  echo "deps: all $(words $(PACKAGES)) packages present"; \
	fi
	@# npm separately: a nodejs from elsewhere (NodeSource) bundles it and conflicts with Debian's.
	@command -v npm >/dev/null || { \
	  echo "deps: installing npm"; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends npm; }
	@# Temporal's TypeScript SDK, pinned by tests/temporal/package-lock.json: the build compiles
	@# Temporal's API from the .proto files inside it (orchestrator/temporal), the Temporal test
	@# runs it. Reinstalled only when the lock file changed; offline, the build goes on without.
	@if cmp -s tests/temporal/package-lock.json $(TEMPORAL_SDK_DIR)/package-lock.json && \
	    [ -d $(TEMPORAL_SDK_DIR)/node_modules/@temporalio/core-bridge ]; then \
	  echo "deps: Temporal SDK up to date in $(TEMPORAL_SDK_DIR)"; \
	else \
	  echo "deps: installing Temporal's TypeScript SDK into $(TEMPORAL_SDK_DIR) (npm ci)"; \
	  mkdir -p $(TEMPORAL_SDK_DIR) && \
	  cp tests/temporal/package.json tests/temporal/package-lock.json $(TEMPORAL_SDK_DIR)/ && \
	  ( cd $(TEMPORAL_SDK_DIR) && npm ci --no-audit --no-fund --loglevel=error ) || { \
	    rm -f $(TEMPORAL_SDK_DIR)/package-lock.json; \
	    echo "deps: could not install the Temporal SDK (offline?): kiln-orchestrator builds" \
	      "without Temporal's API and its test says SKIPPED"; }; \
	fi

build: deps
	cmake --preset $(PRESET) -DKILN_TEMPORAL_NODE_MODULES=$(abspath $(TEMPORAL_SDK_DIR))/node_modules >/dev/null
	cmake --build --preset $(PRESET) -j $(JOBS)

# The formatting check runs first, so a formatting difference fails CI before the build. Then
# every test, then a short fuzzing run of each fuzz target (scripts/fuzz.sh).
FUZZ_SMOKE_SECONDS ?= 10
# A fixed seed and number of executions: the short run in make test does the same work wherever
# it runs (a slower machine stops at FUZZ_SMOKE_SECONDS, a prefix of that work).
FUZZ_SMOKE_SEED ?= 1
FUZZ_SMOKE_RUNS ?= 150000
test: format-check build
	@$(MAKE) --no-print-directory builder-image || \
	  echo "make test: no builder image (see above): the microvm test will say it is skipped"
	ctest --preset $(PRESET) -j $(JOBS)
	FUZZ_SEED=$(FUZZ_SMOKE_SEED) FUZZ_RUNS=$(FUZZ_SMOKE_RUNS) ./scripts/fuzz.sh $(FUZZ_SMOKE_SECONDS) $(JOBS)

# A long fuzzing run: FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 600
fuzz: deps
	./scripts/fuzz.sh $(FUZZ_SECONDS) $(JOBS)

# MACHINE=microvm: the project's builder machine is a QEMU microVM (docs/machines.md).
# KEEP=1: the platform stays up at the end (web console, CLI) until Enter.
MACHINE ?= process
KEEP ?=
demo: build
	@if [ "$(MACHINE)" = microvm ]; then $(MAKE) --no-print-directory builder-image; fi
	KILN_DEMO_MACHINE=$(MACHINE) KILN_DEMO_KEEP=$(KEEP) ./scripts/demo.sh $(BUILD_DIR)/$(PRESET)/bin

# The Debian package of the four binaries (cmake/KilnPackage.cmake), into
# $(BUILD_DIR)/$(PRESET)/packages/kiln_<version>_amd64.deb.
package: build
	cd $(BUILD_DIR)/$(PRESET) && cpack -G DEB

# The microvm provider's image (deploy/builder-image/build.sh): a Debian cloud kernel and an
# initramfs with the built kiln-builder-agent, into $(BUILD_DIR)/builder-image. Rebuilt only
# when the agent or the recipe changed.
BUILDER_IMAGE := $(BUILD_DIR)/builder-image/initrd.cpio
builder-image: build
	@if [ ! -f $(BUILDER_IMAGE) ] || [ -n "$$(find $(BUILD_DIR)/$(PRESET)/bin/kiln-builder-agent \
	    deploy/builder-image -newer $(BUILDER_IMAGE) 2>/dev/null)" ]; then \
	  deploy/builder-image/build.sh $(BUILD_DIR)/builder-image $(BUILD_DIR)/$(PRESET)/bin; \
	else echo "builder-image: $(BUILDER_IMAGE) is up to date"; fi

# The C++ sources `format` rewrites and `format-check` checks: tracked and new, not ignored.
FORMAT_FILES = git ls-files --cached --others --exclude-standard '*.cc' '*.h'

format:
	$(FORMAT_FILES) | xargs -r clang-format -i

# Fails, naming each file and line, when any source differs from what `make format` would write.
format-check: deps
	$(FORMAT_FILES) | xargs -r clang-format --dry-run -Werror

lint: build
	git ls-files '*.cc' | grep -v _test.cc | xargs clang-tidy -p $(BUILD_DIR)/$(PRESET) --quiet

clean:
	rm -rf $(BUILD_DIR)
