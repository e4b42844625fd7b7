# secaas — make demo runs the main job, make test runs everything CI runs.
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
FUZZTIME ?= 10s

.PHONY: all build deps ovs test unit fuzz lint demo demo-clean bench clean

all: build

deps:
	scripts/deps.sh

build:
	$(GO) build -o bin/ ./cmd/...

ovs: deps
	scripts/ovs-start.sh

# Unit, golden, property and integration tests (real OVS, namespaces), then
# a short run of every fuzzer. CI=true turns any skipped integration test
# into a failure.
test: deps ovs build lint
	$(GO) test -count=1 -timeout 20m ./...
	$(MAKE) fuzz

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParsePolicy$$' -fuzztime $(FUZZTIME) ./internal/tenant
	$(GO) test -run '^$$' -fuzz '^FuzzDomainJSON$$' -fuzztime $(FUZZTIME) ./internal/api
	$(GO) test -run '^$$' -fuzz '^FuzzParseTrace$$' -fuzztime $(FUZZTIME) ./internal/ovs
	$(GO) test -run '^$$' -fuzz '^FuzzReader$$' -fuzztime $(FUZZTIME) ./internal/capture
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./internal/capture
	$(GO) test -run '^$$' -fuzz '^FuzzParseVMCoreInfo$$' -fuzztime $(FUZZTIME) ./internal/linuxkern
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeNames$$' -fuzztime $(FUZZTIME) ./internal/linuxkern
	$(GO) test -run '^$$' -fuzz '^FuzzListProcesses$$' -fuzztime $(FUZZTIME) ./internal/linuxkern
	$(GO) test -run '^$$' -fuzz '^FuzzFromBytes$$' -fuzztime $(FUZZTIME) ./internal/guestmem
	$(GO) test -run '^$$' -fuzz '^FuzzHidden$$' -fuzztime $(FUZZTIME) ./internal/winkern
	$(GO) test -run '^$$' -fuzz '^FuzzParseClamdReply$$' -fuzztime $(FUZZTIME) ./internal/av
	$(GO) test -run '^$$' -fuzz '^FuzzLookup$$' -fuzztime $(FUZZTIME) ./internal/ext4
	$(GO) test -run '^$$' -fuzz '^FuzzImages$$' -fuzztime $(FUZZTIME) ./internal/disk
	$(GO) test -run '^$$' -fuzz '^FuzzServer$$' -fuzztime $(FUZZTIME) ./internal/nbd
	$(GO) test -run '^$$' -fuzz '^FuzzClient$$' -fuzztime $(FUZZTIME) ./internal/nbd

lint:
	@test -z "$$(gofmt -l .)" || { gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

demo: deps ovs build
	scripts/demo.sh

demo-clean:
	scripts/demo-clean.sh

bench: deps ovs build
	bin/secaas bench acl --seconds 10 --rounds 3 --out docs/bench-acl.md
	bin/secaas bench nad --out docs/bench-nad.md
	bin/secaas bench vmi --out docs/bench-vmi.md

clean:
	rm -rf bin
