# veil: the two commands a user needs are `make demo` and `make test`; each
# installs what it needs first (Debian packages, the face model, its int8
# version and the OpenVINO runtime that runs them, test images).

GO      ?= go
BIN     := bin/veil
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)

.PHONY: deps models runtimes testdata build demo test test-go bench clean

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
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...
	docker-compose -f docker-compose.yml config -q
	promtool check config dashboards/prometheus.yml
	promtool check rules dashboards/alerts.yml
	cd dashboards && promtool test rules alerts_test.yml

# Speed figures, side by side with deface: writes bench-out/report.md.
bench: models runtimes testdata build
	bash scripts/bench.sh

clean:
	rm -rf bin bench-out veil-demo
