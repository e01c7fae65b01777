# Every tool version is pinned here, and only here.
TEMPORAL_CLI_VERSION  := v1.5.1
MINIO_VERSION         := v0.0.0-20260212201848-7aac2a2c5b7c
WORKFLOWCHECK_VERSION := v0.6.0
VERSITYGW_VERSION     := v1.8.0
# The real cluster (`make cluster`): Temporal server and its SQL schema
# tool, the version docker/ runs (internal/cluster.TemporalVersion).
TEMPORAL_SERVER_VERSION := v1.29.1

BIN     := $(CURDIR)/bin
GO      ?= go
TESTFLAGS ?= -count=1 -timeout 20m

export AUTOGLM_BIN_DIR := $(BIN)

.PHONY: all tools build dev demo demo-finetune cluster test test-unit test-cluster fuzz lint bench bench-cluster clean

all: build

# A tool is rebuilt only when its pinned version changes: the stamp file
# records the version it was built at.
$(BIN)/.temporal-$(TEMPORAL_CLI_VERSION):
	@mkdir -p $(BIN)
	@echo "building the Temporal CLI $(TEMPORAL_CLI_VERSION) into ./bin (about 5 minutes the first time)"
	GOBIN=$(BIN) $(GO) install github.com/temporalio/cli/cmd/temporal@$(TEMPORAL_CLI_VERSION)
	@rm -f $(BIN)/.temporal-* && touch $@

$(BIN)/.minio-$(MINIO_VERSION):
	@mkdir -p $(BIN)
	@echo "building MinIO $(MINIO_VERSION) into ./bin (about 5 minutes the first time)"
	GOBIN=$(BIN) $(GO) install github.com/minio/minio@$(MINIO_VERSION)
	@rm -f $(BIN)/.minio-* && touch $@

$(BIN)/.workflowcheck-$(WORKFLOWCHECK_VERSION):
	@mkdir -p $(BIN)
	GOBIN=$(BIN) $(GO) install go.temporal.io/sdk/contrib/tools/workflowcheck@$(WORKFLOWCHECK_VERSION)
	@rm -f $(BIN)/.workflowcheck-* && touch $@

# The second S3 store of the storage contract suite.
$(BIN)/.versitygw-$(VERSITYGW_VERSION):
	@mkdir -p $(BIN)
	@echo "building versitygw $(VERSITYGW_VERSION) into ./bin"
	GOBIN=$(BIN) $(GO) install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION)
	@rm -f $(BIN)/.versitygw-* && touch $@

# go install names them server and sql: they are renamed as Temporal's
# images name them.
$(BIN)/.temporal_server-$(TEMPORAL_SERVER_VERSION):
	@mkdir -p $(BIN)/.gobin-temporal-server
	@echo "building Temporal server $(TEMPORAL_SERVER_VERSION) and its SQL tool into ./bin (about 5 minutes the first time)"
	GOBIN=$(BIN)/.gobin-temporal-server $(GO) install go.temporal.io/server/cmd/server@$(TEMPORAL_SERVER_VERSION) go.temporal.io/server/cmd/tools/sql@$(TEMPORAL_SERVER_VERSION)
	mv $(BIN)/.gobin-temporal-server/server $(BIN)/temporal-server
	mv $(BIN)/.gobin-temporal-server/sql $(BIN)/temporal-sql-tool
	@rm -rf $(BIN)/.gobin-temporal-server $(BIN)/.temporal_server-* && touch $@

tools: $(BIN)/.temporal-$(TEMPORAL_CLI_VERSION) $(BIN)/.minio-$(MINIO_VERSION) $(BIN)/.workflowcheck-$(WORKFLOWCHECK_VERSION) $(BIN)/.versitygw-$(VERSITYGW_VERSION) $(BIN)/.temporal_server-$(TEMPORAL_SERVER_VERSION)

build:
	$(GO) build -o $(BIN)/autoglm ./starter

# The local stack until Ctrl-C: Temporal dev server with its Web UI on :8233,
# MinIO on :9000 (console :9001), a worker, and the test model server
# unless AUTOGLM_LLM_BASE_URL points at a real one.
dev: tools build
	$(BIN)/autoglm dev

# A real cluster until Ctrl-C, data in .data/cluster: PostgreSQL, Temporal
# server as five processes (frontend, matching, worker, two history),
# versitygw, `autoglm setup`, the API server, three worker nodes.
cluster: tools build
	$(BIN)/autoglm cluster --dir .data/cluster

# One batch task end to end on the local stack, with an approval.
demo: tools build
	$(BIN)/autoglm demo

# A fine-tuning job on the test trainer whose worker is killed once
# mid-run and resumes from its checkpoint; then a batch on the tuned model.
demo-finetune: tools build
	$(GO) build -o $(BIN)/testtrainer ./internal/trainer/testtrainer
	$(BIN)/autoglm demo finetune

# Unit tests and integration tests; the integration tests start the real
# Temporal dev server and MinIO from ./bin on free ports.
test: tools
	$(GO) test $(TESTFLAGS) $$($(GO) list ./... | grep -v /tests/cluster)
	$(MAKE) fuzz

# Every parser of untrusted input has a fuzz target. `go test` above
# already runs each on its committed corpus (testdata/fuzz) and seeds;
# here each also explores for FUZZTIME: a few seconds in CI finds the
# shallow crashes at a cost of about a minute for all of them (most of it
# the instrumented builds, which the build cache keeps). Run longer with
# `make fuzz FUZZTIME=10m`; a crash it finds lands in testdata/fuzz, to
# be committed with its fix.
FUZZTIME ?= 3s
FUZZ_TARGETS := \
	./internal/batch:FuzzParseRequest \
	./internal/batch:FuzzLineReader \
	./internal/authz:FuzzParse \
	./internal/assertion:FuzzVerify \
	./internal/webhook:FuzzCheckURL \
	./internal/webhook:FuzzCheckAddr \
	./internal/server:FuzzAttachmentName \
	./internal/model:FuzzParseListing \
	./internal/trainer:FuzzParseExample

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $$t for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) "$${t%%:*}"; \
	done

# The faults of a real cluster (tests/cluster): PostgreSQL, the Temporal
# services as processes, Prometheus.
test-cluster: tools
	$(GO) test $(TESTFLAGS) ./tests/cluster/...

test-unit:
	$(GO) test $(TESTFLAGS) -short ./...

lint: tools
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(BIN)/workflowcheck ./workflows/...

# Every figure against a baseline measured in the same run: the batch
# engine through the whole stack, then the artifact store's uploads, the
# model mirror, the fleet, and the fine-tuning runner.
bench: tools
	$(GO) run ./internal/bench
	$(GO) run ./internal/bench/server
	$(GO) run ./internal/storage/benchcmd
	$(GO) run ./internal/bench/mirrorbench
	$(GO) run ./internal/bench/fleetbench
	$(GO) run ./internal/bench/trainbench
	$(GO) run ./internal/bench/clusterbench

# The cluster's figures alone: a batch on the cluster against the dev
# server, one-prompt tasks against bare workflows on the cluster.
bench-cluster: tools
	$(GO) run ./internal/bench/clusterbench

clean:
	rm -rf .data
