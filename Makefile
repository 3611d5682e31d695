# Herald's build, run and test entry points. Everything here needs only Go
# (see README.md for the version); tools such as buf are pinned in
# tools/go.mod and run with `go tool`.

SHELL := /bin/bash
GO    ?= go
BIN   := bin
# Every module in the workspace, as package patterns: `go test ./...` at a
# go.work root that is not itself a module matches nothing.
MODULES  = $(shell $(GO) list -m -f '{{.Dir}}')
PKGS     = $(addsuffix /...,$(MODULES))
# The cluster tests restart the shared Redis and Cassandra, so they run on
# their own, after every other package.
CLUSTER_PKG = github.com/herald-feed/herald/services/herald/clustertest
UNIT_PKGS   = $(filter-out $(CLUSTER_PKG),$(shell $(GO) list $(PKGS)))
BUF      := GOWORK=off $(GO) tool -modfile=$(CURDIR)/tools/go.mod buf
FUZZTIME ?= 10s

# The real servers the adapter tests need, started (or reused) as local
# processes by deploy/local; see deploy/local/README.md.
TEST_SERVERS ?= redis nats etcd cassandra kafka zookeeper redis-sentinel
WITH_SERVERS = eval "$$(deploy/local/env.sh)" &&
# Each go test run keeps its output, and failed cluster tests their
# instances' logs, here; scripts/print-logs.sh (run by .ci/run on failure)
# prints them with the servers' logs.
export HERALD_TEST_LOG_DIR ?= $(CURDIR)/.local/logs/tests
GOTEST = scripts/gotest.sh
# The packages whose tests run against the real servers.
SERVER_PKGS = github.com/herald-feed/herald/services/platform/rediscache \
	github.com/herald-feed/herald/services/platform/cassandrastore \
	github.com/herald-feed/herald/services/herald/allinone \
	$(CLUSTER_PKG)

.PHONY: all build run test unit cluster-test drills drills-ci need-strace need-jaeger test-repeat up down vet lint staticcheck check-tidy check-alerts check-mermaid proto check-proto fuzz bench clean tidy servers servers-down cluster cluster-down bench-redis bench-cluster bench-lag bench-ceiling bench-representations bench-scaling lab-coordination

all: build

## build: compile the all-in-one server, the four services and feedctl into bin/
build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./services/herald/cmd/herald ./services/herald/cmd/feedctl \
		./services/post/cmd/post ./services/graph/cmd/graph \
		./services/fanout/cmd/fanout ./services/timeline/cmd/timeline

## run: start the all-in-one on embedded defaults (data in ./.herald)
run: build
	$(BIN)/herald $(ARGS)

## test: the whole suite: the lint checks, then unit, contract, system and cluster tests, then the drills CI runs
test: lint unit cluster-test drills-ci

## unit: every package but the cluster tests (unit, contract and in-process system tests)
unit: servers
	$(WITH_SERVERS) $(GOTEST) unit -count=1 -skip '^TestRing' $(UNIT_PKGS)

## cluster-test: multi-process tests on the real servers (the drills are `make drills`)
cluster-test: servers need-strace need-jaeger
	$(WITH_SERVERS) $(GOTEST) cluster -count=1 -timeout 15m -skip '^TestDrill' $(CLUSTER_PKG)

## drills: break each server on purpose while clients work, on the HA servers (started as needed); prints one table, written to loadtest/out/drills; DRILLS=<regexp> runs those whose TestDrill<name> matches, DRILLS_SKIP=<regexp> leaves some out
DRILLS ?= .
DRILLS_SKIP ?=
drills: servers need-strace
	$(WITH_SERVERS) scripts/drills.sh '$(DRILLS)' '$(DRILLS_SKIP)'

# The drills make test (and so CI) leaves out: those on the three-broker Kafka and on the
# Cassandra ring, six more JVMs (about 4.5 GiB and several minutes of start-up on two cores).
# make drills runs them, and the ring's store test.
CI_DRILLS_SKIP = KafkaBrokerKilled|CassandraNodesDown
drills-ci: servers need-strace
	$(WITH_SERVERS) scripts/drills.sh . '$(CI_DRILLS_SKIP)'

## test-repeat: run the server-backed packages N times (default 10) and print a pass count; LOAD=1 keeps one core busy meanwhile
N ?= 10
test-repeat: servers
	$(WITH_SERVERS) scripts/test-repeat.sh $(N) $(SERVER_PKGS)

# The power-cut tests and drills replay the file-system calls that strace records (Debian's
# strace, installed if missing).
need-strace:
	@bash -c 'source deploy/local/lib.sh && apt_install strace strace'

# The trace test (clustertest.TestTracePostPath) starts a Jaeger of its own; build it first,
# so that the first build (about 5 minutes) is not counted against the tests' timeout.
need-jaeger:
	@deploy/local/jaeger.sh build

## servers: start (or reuse) the local servers the tests use; servers-down stops them
servers:
	deploy/local/up.sh $(TEST_SERVERS)

servers-down:
	deploy/local/stop.sh all

## cluster: real etcd, NATS, Redis and Cassandra plus two instances of each service, as local processes; BUS=kafka puts the event log on Kafka; HA=1 replicates every server (three etcd members, three NATS nodes or Kafka brokers, a Cassandra ring, Redis under Sentinels)
BUS ?= jetstream
HA ?= 0
cluster:
	HERALD_HA=$(HA) HERALD_BUS=$(BUS) deploy/local/cluster.sh up

## up: the compose cluster, docker-compose.yml (docker compose up --build -d --wait): Grafana on 127.0.0.1:3000, Prometheus on 127.0.0.1:9090; BUS=kafka runs the event log on Kafka
up:
	BUS=$(BUS) docker compose $(if $(filter kafka,$(BUS)),--profile kafka) up --build -d --wait

## down: stop the compose cluster, keeping its volumes (docker compose down -v also drops them)
down:
	docker compose --profile '*' down

## cluster-down: stop everything `make cluster` started
cluster-down:
	deploy/local/cluster.sh down

vet:
	$(GO) vet $(PKGS)

## lint: buf lint and the generated-code check, go vet, staticcheck, go mod tidy -diff in every module, and the alert rules
lint: check-proto vet staticcheck check-tidy check-alerts check-mermaid

## check-mermaid: parse every mermaid diagram in the docs with the mermaid library GitHub uses (pinned in tools/mermaid, installed with npm ci)
check-mermaid:
	@command -v npm >/dev/null || { echo "check-mermaid: npm (Node 20) is needed" >&2; exit 1; }
	@cd tools/mermaid && npm ci --no-audit --no-fund --loglevel=error >/dev/null
	@node tools/mermaid/check.mjs $$(git ls-files '*.md' | xargs grep -l '```mermaid')

## check-alerts: promtool check rules on deploy/prometheus/alerts.yml (Debian's prometheus package, installed if missing)
check-alerts:
	deploy/local/prometheus.sh check

STATICCHECK := $(BIN)/staticcheck
# staticcheck is pinned in tools/go.mod and built from it; it then runs over
# the workspace's packages.
$(STATICCHECK): tools/go.mod tools/go.sum
	@mkdir -p $(BIN)
	cd tools && GOWORK=off $(GO) build -o $(CURDIR)/$(STATICCHECK) honnef.co/go/tools/cmd/staticcheck

## staticcheck: staticcheck (pinned in tools/go.mod) over every module
staticcheck: $(STATICCHECK)
	$(STATICCHECK) $(PKGS)

## check-tidy: fail if go mod tidy would change any module's go.mod or go.sum
check-tidy:
	@for m in $(MODULES) $(CURDIR)/tools; do \
		out=$$(cd $$m && $(GO) mod tidy -diff 2>&1) || { echo "check-tidy: $$m is not tidy; run make tidy:" >&2; echo "$$out" >&2; exit 1; }; \
	done
	@echo "check-tidy: every module is tidy"

## proto: regenerate the Go code from proto/
proto:
	cd proto && $(BUF) lint && $(BUF) generate

## check-proto: fail if the committed generated code differs from a fresh generation
check-proto: proto
	@if ! git diff --quiet -- proto || [ -n "$$(git ls-files --others --exclude-standard proto)" ]; then \
		echo "check-proto: generated code in proto/ is stale; run 'make proto' and commit the result" >&2; \
		git status --short -- proto >&2; exit 1; \
	fi
	@echo "check-proto: generated code is up to date"

## fuzz: run each fuzz target for FUZZTIME (default 10s)
fuzz:
	$(GO) test ./services/platform/pagetoken -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME)
	$(GO) test ./services/platform/feed -run '^$$' -fuzz '^FuzzValidateText$$' -fuzztime $(FUZZTIME)
	$(GO) test ./services/platform/feed -run '^$$' -fuzz '^FuzzValidateUserID$$' -fuzztime $(FUZZTIME)
	$(GO) test ./services/platform/feed -run '^$$' -fuzz '^FuzzParsePostID$$' -fuzztime $(FUZZTIME)
	$(GO) test ./services/platform/feed -run '^$$' -fuzz '^FuzzValidateIdempotencyKey$$' -fuzztime $(FUZZTIME)
	$(GO) test ./services/platform/event/eventcodec -run '^$$' -fuzz '^FuzzUnmarshal$$' -fuzztime $(FUZZTIME)
	$(GO) test ./services/platform/auth -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME)
	$(GO) test ./services/platform/auth -run '^$$' -fuzz '^FuzzParseKeys$$' -fuzztime $(FUZZTIME)
	$(GO) test ./services/platform/auth -run '^$$' -fuzz '^FuzzBearerToken$$' -fuzztime $(FUZZTIME)

## bench: Go benchmarks of the hot paths (bench-lag and bench-ceiling run the slow in-process ones)
bench: servers
	$(WITH_SERVERS) $(GO) test -run '^$$' -bench . -skip 'FanoutLag|FanoutMillion|Ceiling|Scaling' -benchmem $(UNIT_PKGS)

## bench-ceiling: Herald's fan-out deliveries/s and warm reads/s against raw Redis (redis-benchmark, and raw ZADD rounds into the same full timelines), same Redis, same run
bench-ceiling:
	deploy/local/bench-ceiling.sh

## bench-lag: post→visible lag of a pushed post for 1,000, 100,000 and 1,000,000 followers (all-in-one, Redis timelines)
bench-lag:
	deploy/local/bench-lag.sh

## bench-representations: home-timeline representations (listpack, ~ID listpack, skiplist, list, buckets, shorter members) side by side on one Redis; run it on a Redis of its own (HERALD_REDIS_PORT), it needs about 3 GB
bench-representations:
	deploy/local/bench-representations.sh

## bench-scaling: fan-out cost against followers per post, read cost against following count under push, pull and hybrid: tables and PNG charts in docs/scaling
bench-scaling: servers
	deploy/local/bench-scaling.sh

## bench-redis: Redis timeline inserts through the adapter vs redis-benchmark ZADD, same run
bench-redis:
	deploy/local/bench-redis.sh

## bench-cluster: GetHomeTimeline (warm) and CreatePost latency through a real cluster
bench-cluster: servers
	$(WITH_SERVERS) $(GO) test -run '^$$' -bench . -skip CreatePostRate -benchtime 500x $(CLUSTER_PKG)
	$(WITH_SERVERS) $(GO) test -run '^$$' -bench '^BenchmarkCreatePostRate$$' -benchtime 1x -timeout 30m $(CLUSTER_PKG)

## tidy: go mod tidy in every module
tidy:
	@for m in $(MODULES) tools; do (cd $$m && $(GO) mod tidy) || exit 1; done

clean:
	rm -rf $(BIN)

help:
	@grep -E '^## ' $(MAKEFILE_LIST) | sed 's/^## /  /'

# Load testing (loadtest/README.md): feedload, the strategy comparison and the k6 scripts.
.PHONY: feedload loadtest bench-strategies check-k6
test: check-k6

## feedload: build the load generator into bin/
feedload:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./loadtest/cmd/feedload

## loadtest: run feedload against a running all-in-one (make run); LOADTEST_ARGS adds flags
LOADTEST_ARGS ?=
loadtest: feedload
	$(BIN)/feedload run --addr 127.0.0.1:7070 --out loadtest/out/run $(LOADTEST_ARGS)

## bench-strategies: one seeded workload against push, pull and hybrid on the local Redis and Cassandra; BENCH_ARGS scales it
BENCH_ARGS ?=
bench-strategies: build feedload servers
	$(WITH_SERVERS) $(BIN)/feedload compare --herald $(BIN)/herald --redis "$$HERALD_REDIS_ADDR" \
		--cassandra "$$HERALD_CASSANDRA_HOSTS" --local-dir "$${HERALD_LOCAL_DIR:-.local}" \
		--out loadtest/out/bench-strategies $(BENCH_ARGS)

## check-k6: syntax-check the k6 scripts (k6 itself is not needed)
check-k6:
	@for f in loadtest/k6/*.js; do \
		node --input-type=module --check < $$f || { echo "check-k6: $$f has a syntax error" >&2; exit 1; }; \
	done
	@echo "check-k6: loadtest/k6/*.js parse"

# The coordination lab (docs/lab/coordination.md): ZooKeeper and etcd locks, elections,
# failover, throughput and fencing, measured on a three-node ensemble and a three-member cluster.
## lab-coordination: ZooKeeper vs etcd recipes measured (hand-off latency, herd effect, failover, throughput, fencing); starts and stops its own servers; LAB_ARGS adds labcoord run flags
LAB_ARGS ?=
lab-coordination:
	deploy/local/lab-coordination.sh $(LAB_ARGS)

# The event-log lab (docs/lab/log.md): JetStream and Kafka through Herald's adapters, on the
# running servers and on clusters the lab starts.
.PHONY: lab-log
## lab-log: JetStream vs Kafka measured (producer throughput and latency per durability setting, per-key order, redelivery after SIGKILL, rebalance pause, post→visible); starts and stops its own extra servers; LAB_ARGS adds lablog run flags
LAB_ARGS ?=
lab-log:
	deploy/local/lab-log.sh $(LAB_ARGS)
