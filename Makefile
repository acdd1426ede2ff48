# goswan: an IKEv2 daemon with pluto's command line and a user-space ESP data plane.
#
#   make          build bin/pluto, bin/whack and bin/ipsec
#   make demo     run the main job on its embedded default (no root needed)
#   make test     every check and test (what CI runs)

GO      ?= go
BIN     := bin
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -X main.version=$(VERSION)
CMDS    := pluto whack ipsec
BENCH   := espbench tunbench ikebench

.PHONY: all build demo test vet fmt-check cross fuzz clean bench

all: build

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/ $(addprefix ./cmd/,$(CMDS))
	$(GO) build -trimpath -o $(BIN)/ $(addprefix ./bench/cmd/,$(BENCH))

# The standard benchmark set (under ten minutes on 2 cores): JSON, Markdown
# and PNG for each tool in bench/results/. Comparisons run where
# wireguard-go/wg and strongSwan are installed; without root only the
# netstack set-up runs.
BENCH_OUT ?= bench/results
bench: build
	$(BIN)/espbench -time 200ms -out $(BENCH_OUT)/espbench
	$(BIN)/tunbench -bindir $(BIN) -compare -runs 2 -duration 3s -quiet-wait 3s -out $(BENCH_OUT)/tunbench
	$(BIN)/ikebench -bindir $(BIN) -compare -k 100 -c 8 -runs 2 -limit 300 -run-timeout 30s -quiet-wait 3s -out $(BENCH_OUT)/ikebench

demo: build
	$(GO) run ./demo -bin $(BIN)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# The bsdkame back end must build for FreeBSD.
cross:
	GOOS=freebsd $(GO) build ./...

test: fmt-check vet cross
	$(GO) test -count=1 -timeout 15m ./...

# Run each fuzz target for a while (FUZZTIME each); the seed corpora already
# run as ordinary tests in `make test`.
FUZZTIME ?= 30s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -rf $(BIN)
