# The two commands of the README:
#   make demo   install what rung needs, build it, run the demo
#   make test   install what the tests need, run every test
SHELL := /bin/bash
GO ?= go
BIN := bin/rung
export CGO_ENABLED := 0

# Debian packages rung drives for real. Installed once; `apt-get update`
# runs only when something is missing.
# qemu-system-x86, linux-image-amd64 and e2fsprogs are the vm tier: the
# VMM, the guest kernel with its modules, and mkfs.ext4 for root disks.
DEB_PACKAGES := runc runsc busybox-static etcd-server qemu-system-x86 linux-image-amd64 e2fsprogs
# What only the tests need: rpm and Berkeley DB's tools build the real rpm
# databases the scanner is tested on; chromium runs the dashboard's browser
# test (driven by chromedp, never a downloaded browser); debootstrap makes
# the Debian root that `rung image pack` is tested on; iproute2 and nftables
# make the tenant-network tests' namespace "hosts" and read their tables
# back (the product itself uses netlink, never these commands).
DEB_TEST_PACKAGES := rpm db5.3-util chromium firefox-esr debootstrap iproute2 nftables

# gVisor's runsc with sandbox networks (docs/networks.md): Debian 12's
# runsc can't run --network=sandbox in a user-namespaced sandbox, so a
# pinned gVisor from the Go module proxy is built cgo-free into bin/runsc,
# which rung up/agent/demo use by default (--runsc) and the tests find.
# The stamp rebuilds it when the pin moves.
RUNSC_VERSION := v0.0.0-20260905035102-160fafc42237
RUNSC_STAMP := bin/.runsc-$(RUNSC_VERSION)

.PHONY: demo test deps build vet bench fuzz clean runsc

runsc: $(RUNSC_STAMP)

$(RUNSC_STAMP):
	mkdir -p bin
	GOBIN=$(abspath bin) $(GO) install -trimpath gvisor.dev/gvisor/runsc@$(RUNSC_VERSION)
	chmod 0755 bin/runsc
	rm -f bin/.runsc-* && touch $@

demo: deps build runsc
	./$(BIN) demo

# gotestsum runs `go test` and runs a failed test once more: on a shared
# 2-core machine a timing flake must not discard a whole run. A test that
# needed the second run is named in the summary ("re-run") and is a bug to
# fix; a test that fails twice fails the run.
GOTESTSUM := gotest.tools/gotestsum@v1.13.0

test: DEB_PACKAGES += $(DEB_TEST_PACKAGES)
test: deps vet runsc
	$(GO) run $(GOTESTSUM) --format standard-quiet --rerun-fails=1 --rerun-fails-max-failures=5 \
	  --packages=./... -- -count=1 -timeout 25m

deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

build:
	$(GO) build -trimpath -buildvcs=auto -o $(BIN) ./cmd/rung
	$(GO) build -trimpath -buildvcs=auto -ldflags=-s -o bin/rung-vm ./cmd/rung-vm

vet:
	$(GO) vet ./...

bench: build
	./$(BIN) bench placement

fuzz:
	$(GO) test ./api/v1 -run '^$$' -fuzz FuzzDecode -fuzztime 60s

clean:
	rm -rf bin
