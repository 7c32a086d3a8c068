# veil: the two commands a user needs are `make demo` and `make test`; each
# installs what it needs first (Debian packages, the face model, its int8
# version and the OpenVINO runtime that runs them, test images).

GO      ?= go
BIN     := bin/veil
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)

.PHONY: fuzz soak fleet-bench deps models runtimes testdata build demo test test-go bench clean

deps:
	bash scripts/setup.sh

# The checked f32 CenterFace, and the int8 one made from it on this machine
# (pinned tools in a venv, setup time only).
models: deps
	bash scripts/fetch-models.sh
	bash scripts/quantize-model.sh
	bash scripts/fetch-person-model.sh

# OpenVINO's C libraries from the PyPI wheel, pinned and checksummed.
runtimes: deps
	bash scripts/fetch-runtimes.sh

testdata: deps
	bash scripts/fetch-testdata.sh

build: deps
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/veil

# The main job: the whole pipeline on the built-in sample camera, no outside
# service needed. Ctrl-C stops it.
demo: models runtimes build
	./$(BIN) demo

# The test suite, as CI runs it (.ci/run calls exactly this).
test: models runtimes testdata
	bash scripts/kafka/broker.sh fetch
	$(MAKE) test-go

test-go:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
	$(GO) test -count=1 -timeout 30m ./...
	docker-compose -f docker-compose.yml config -q
	@# The token file is compose's secret; a stand-in lets promtool check everything else.
	tmp=$$(mktemp -d) && cp dashboards/prometheus.yml dashboards/alerts.yml $$tmp/ && echo stand-in-token > $$tmp/token && \
	  sed -i "s#/run/secrets/veil_metrics_token#$$tmp/token#" $$tmp/prometheus.yml && \
	  promtool check config $$tmp/prometheus.yml; rc=$$?; rm -rf $$tmp; exit $$rc
	promtool check rules dashboards/alerts.yml
	cd dashboards && promtool test rules alerts_test.yml

# Every fuzz target for FUZZTIME each (go test -fuzz runs one at a time).
FUZZTIME ?= 30s
fuzz: models runtimes
	@set -e; for t in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
	  for f in $$(grep -h '^func Fuzz' $$t/*_test.go | sed 's/func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
	    echo "== $$t $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$t; done; done

# Four cameras, the console with logins and live viewers, and Kafka for
# SOAK (30m): RSS, goroutines, open files and disk each minute in
# soak-out/soak.csv, and a failure if any grows without bound.
SOAK ?= 30m
soak: models runtimes testdata
	bash scripts/kafka/broker.sh fetch
	mkdir -p soak-out
	VEIL_SOAK=$(SOAK) VEIL_SOAK_OUT=$(CURDIR)/soak-out $(GO) test -count=1 -run '^TestSoak$$' -timeout 2h -v ./cmd/veil

# Speed figures, side by side with deface: writes bench-out/report.md.
# The fleet benchmark (docs/fleet.md): 200 sites x 8 cameras through a
# three-broker cluster and three exporters, with 10 s and with 1 s windows.
fleet-bench:
	bash scripts/kafka/broker.sh fetch
	VEIL_FLEET_WINDOW=10s VEIL_FLEET_FOR=60s $(GO) test -run '^$$' -bench BenchmarkFleet -benchtime=1x -timeout 20m ./pipeline/counts/fleetsim
	VEIL_FLEET_WINDOW=1s VEIL_FLEET_FOR=30s $(GO) test -run '^$$' -bench BenchmarkFleet -benchtime=1x -timeout 20m ./pipeline/counts/fleetsim

bench: models runtimes testdata build
	bash scripts/bench.sh

clean:
	rm -rf bin bench-out veil-demo
