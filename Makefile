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

.PHONY: all build demo test vet fmt-check cross fuzz clean

all: build

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/ $(addprefix ./cmd/,$(CMDS))

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
