# secaas — make demo runs the main job, make test runs everything CI runs.
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
FUZZTIME ?= 10s

.PHONY: all build deps ovs test unit fuzz lint demo demo-clean bench clean

all: build

deps:
	scripts/deps.sh

build:
	$(GO) build -buildvcs=auto -o bin/ ./cmd/...
	bin/secaas kmon build --out bin/kmon-monitor.o

ovs: deps
	scripts/ovs-start.sh

# Unit, golden, property and integration tests (real OVS, namespaces), then
# a short run of every fuzzer. CI=true turns any skipped integration test
# into a failure.
# The concurrent packages run again under the race detector.
RACE_PKGS = ./internal/agent ./internal/bus ./internal/api ./internal/store ./internal/controller ./internal/daemon ./internal/nbd ./internal/vhostuser ./internal/hostpath

test: deps ovs build lint
	$(GO) test -count=1 -timeout 20m ./...
	$(GO) test -race -count=1 -timeout 20m $(RACE_PKGS)
	$(MAKE) fuzz

fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh ./internal/tenant FuzzParsePolicy
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh ./internal/tenant FuzzStrictJSON
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh ./internal/api FuzzDomainJSON
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh ./internal/ovs FuzzParseTrace
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh ./internal/capture FuzzReader
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh ./internal/capture FuzzDecode
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh ./internal/linuxkern FuzzParseVMCoreInfo
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh ./internal/linuxkern FuzzDecodeNames
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh ./internal/linuxkern FuzzListProcesses
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh ./internal/linuxkern FuzzHeld
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh ./internal/linuxkern FuzzIntegrity
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh ./internal/linuxkern FuzzLoadImage
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh ./internal/guestmem FuzzFromBytes
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh ./internal/winkern FuzzHidden
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh ./internal/av FuzzParseClamdReply
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh ./internal/ext4 FuzzLookup
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh ./internal/ntfs FuzzLookup
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh ./internal/disk FuzzImages
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh ./internal/nbd FuzzServer
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh ./internal/nad FuzzParseLabels
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh ./internal/lstm FuzzLoad
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh ./internal/lab FuzzDNSAnswer
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh ./internal/nbd FuzzClient
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh ./internal/vhostuser FuzzServeConn
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh ./internal/bus FuzzUnzip
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh ./internal/inventory FuzzImport
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh ./internal/elfreloc FuzzRelocate
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh ./internal/elfreloc FuzzParseSymbols
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh ./internal/gdbstub FuzzDecode
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh ./internal/kmon FuzzDecodeEvents

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
	bin/secaas bench lstm --out docs/bench-lstm.md
	bin/secaas bench vmi --out docs/bench-vmi.md
	bin/secaas bench drift --out docs/bench-drift.md

clean:
	rm -rf bin
