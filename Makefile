# hearsay build and test entry points.
GO ?= go
# VERSION is stamped into the binaries of make docker.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: test test-short soak build proto lint fuzz demo bench docker bench-vs-memberlist

# test is the README's test command and what CI runs: formatting, vet,
# every test with the race detector (the multi-host tests as root), then the
# simulator's package again without it: its long simulations are single-
# threaded (nothing for the detector to find, ten times slower under it)
# and run only there, with 200 random seeds (TestExplore); then deploy/'s
# checks of the Kubernetes manifests and the systemd unit (a module of its
# own, so that the library does not depend on the Kubernetes API packages).
# Tests keep what a person may want to see (the dashboard's screenshot) in
# artifacts/.
test:
	@unformatted="$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$'))"; \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	HEARSAY_ARTIFACTS=$(CURDIR)/artifacts $(GO) test -race -count=1 -timeout 20m ./...
	$(GO) test -count=1 -timeout 15m ./sim
	cd deploy && $(GO) vet ./... && $(GO) test -count=1 -timeout 5m ./...

# soak runs the long explorations: 5,000 random simulator seeds (about 7
# minutes on two cores) and the Jepsen-style suite's long variant (three
# rounds of faults, each phase four times longer; about 12 minutes, root).
SOAK_SEEDS ?= 5000
soak:
	$(GO) test -count=1 -timeout 2h -run '^TestExplore$$' -v ./sim -args -explore=$(SOAK_SEEDS)
	HEARSAY_SOAK=1 $(GO) test -count=1 -timeout 1h -run '^TestJepsen$$' -v ./test/cluster

test-short:
	$(GO) test -short -count=1 ./...

# TAGS are the build tags of the shipped binary: noplot leaves gonum/plot
# and its fonts out (about 6 MB; `hearsay sim --plot` then says so). Build
# with TAGS= for a binary that plots.
TAGS ?= noplot

build:
	$(GO) build -tags '$(TAGS)' -o bin/hearsay ./cmd/hearsay

demo:
	$(GO) run ./cmd/hearsay demo

# proto regenerates the committed protobuf code. Needs protoc (Debian:
# protobuf-compiler) and protoc-gen-go (go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12).
proto:
	PATH="$$PATH:$$($(GO) env GOPATH)/bin" protoc --go_out=. --go_opt=paths=source_relative internal/wire/wire.proto

lint:
	$(GO) vet ./...
	$$($(GO) env GOPATH)/bin/staticcheck ./...

# fuzz runs every fuzz target for FUZZTIME each (seed corpora run in make test).
FUZZTIME ?= 30s
fuzz:
	$(GO) test ./internal/wire -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/wire -run '^$$' -fuzz '^FuzzReadFrame$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/transport -run '^$$' -fuzz '^FuzzOpen$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/transport -run '^$$' -fuzz '^FuzzRefusal$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/transport -run '^$$' -fuzz '^FuzzOpenSigned$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/transport -run '^$$' -fuzz '^FuzzKeyringFile$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/certs -run '^$$' -fuzz '^FuzzParseRole$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/certs -run '^$$' -fuzz '^FuzzParseCert$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/certs -run '^$$' -fuzz '^FuzzRevocation$$' -fuzztime $(FUZZTIME)
	$(GO) test ./engine -run '^$$' -fuzz '^FuzzStep$$' -fuzztime $(FUZZTIME)
	$(GO) test ./engine -run '^$$' -fuzz '^FuzzStepSigned$$' -fuzztime $(FUZZTIME)
	$(GO) test ./engine/antientropy -run '^$$' -fuzz '^FuzzStep$$' -fuzztime $(FUZZTIME)
	$(GO) test ./store/digest -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME)
	$(GO) test ./store/pebblestore -run '^$$' -fuzz '^FuzzDecodeRecord$$' -fuzztime $(FUZZTIME)

# docker builds the agent image hearsay:dev FROM scratch around a static
# binary cross-compiled here (no base image to pull), running as an
# unprivileged user. GOARCH is the host's unless given (make docker
# GOARCH=arm64); PLATFORMS builds a multi-arch image with docker buildx
# instead (make docker PLATFORMS=linux/amd64,linux/arm64 PUSH=--push: a
# multi-arch image must go to a registry, or use --load with one platform).
# compose.yaml runs three of them.
IMAGE ?= hearsay:dev
GOARCH ?= $(shell $(GO) env GOARCH)
PLATFORMS ?=
PUSH ?=
docker:
	@mkdir -p bin/rootfs/data bin/rootfs/keys
	@if [ -n "$(PLATFORMS)" ]; then \
		for p in $$(echo "$(PLATFORMS)" | tr ',' ' '); do \
			arch=$${p#linux/}; \
			echo "building bin/hearsay-linux-$$arch"; \
			CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -tags '$(TAGS)' -trimpath -ldflags "-s -w -X main.Version=$(VERSION)" -o bin/hearsay-linux-$$arch ./cmd/hearsay || exit 1; \
		done; \
		docker buildx build --platform "$(PLATFORMS)" -t $(IMAGE) $(PUSH) .; \
	else \
		CGO_ENABLED=0 GOOS=linux GOARCH=$(GOARCH) $(GO) build -tags '$(TAGS)' -trimpath -ldflags "-s -w -X main.Version=$(VERSION)" -o bin/hearsay-linux-$(GOARCH) ./cmd/hearsay && \
		docker build --build-arg TARGETARCH=$(GOARCH) --platform linux/$(GOARCH) -t $(IMAGE) .; \
	fi

# bench-vs-memberlist measures hearsay side by side with hashicorp/memberlist
# v0.7.0 on loopback (failure detection at 16 and 48 nodes, broadcast of 64 B,
# 4 KiB and 1 MiB values at 48 nodes). It is a module of its own
# (bench/vsmemberlist), so hearsay does not depend on memberlist; about 8
# minutes on two cores. VSML_FLAGS adds flags, e.g. VSML_FLAGS=--json.
VSML_FLAGS ?=
bench-vs-memberlist:
	cd bench/vsmemberlist && $(GO) run . --n 16,48 --runs 5 --broadcast-n 48 --values 64,4096,1048576 $(VSML_FLAGS)
