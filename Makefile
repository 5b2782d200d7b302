# modelrollout: `make demo` runs the main job, `make test` runs every test. Both install what they need.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CACHE_DIR ?= $(or $(MODELROLLOUT_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/modelrollout)
BIN_DIR := $(CACHE_DIR)/bin
export KUBECONFIG ?= $(CURDIR)/.testenv/kubeconfig
export PATH := $(BIN_DIR):$(CURDIR)/$(VENV)/bin:$(PATH)
PYTEST_ARGS ?=

.PHONY: help
help: ## list targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

$(VENV)/.installed: pyproject.toml hack/venv.sh
	$(PYTHON) -m venv $(VENV)
	bash hack/venv.sh $(VENV)
	touch $@

.PHONY: venv
venv: $(VENV)/.installed ## Python virtualenv with the operator, the model server and dev tools

.PHONY: tools
tools: ## build etcd, kube-apiserver, controller-manager, scheduler, kubectl, kwok, helm (cached)
	bash hack/build-tools.sh

.PHONY: system-deps
system-deps: ## Debian packages: prometheus, wrk, iproute2 (only what is missing)
	bash hack/system-deps.sh

.PHONY: azurite
azurite: system-deps ## Azurite, the azure:// model tests' Blob Storage emulator (npm, cached)
	bash hack/build-tools.sh azurite

.PHONY: deps
deps: venv tools system-deps

.PHONY: client-venvs
client-venvs: venv ## the Open Inference Protocol clients the server tests use (KServe's SDK), in their own venv
	VENV=$(VENV) bash hack/client-venvs.sh

.PHONY: cluster-up
cluster-up: tools ## start the local control plane (etcd, apiserver, controllers, scheduler, kwok)
	bash hack/cluster-up.sh

.PHONY: cluster-down
cluster-down: ## stop the local control plane and remove its state
	bash hack/cluster-down.sh

.PHONY: env
env: ## print exports for a shell: eval "$$(make -s env)"
	@echo 'export PATH="$(BIN_DIR):$(CURDIR)/$(VENV)/bin:$$PATH"'
	@echo 'export KUBECONFIG="$(KUBECONFIG)"'

.PHONY: crds
crds: venv ## regenerate crds/ (and the chart's copy) from the pydantic API models
	$(PY) -m modelrollout.api.crd > crds/modeldeployment.yaml
	cp crds/modeldeployment.yaml charts/modelrollout/crds/

.PHONY: k8s-schemas
k8s-schemas: venv ## re-vendor the core/v1 pod-spec schemas spec.serving embeds, from the local cluster's API server
	bash hack/cluster-up.sh >/dev/null
	KUBECONFIG=$(CURDIR)/.testenv/kubeconfig PYTHONPATH=$(CURDIR) $(PY) hack/k8s_schemas.py
	$(MAKE) crds

.PHONY: run
run: venv ## run the operator against $$KUBECONFIG (default .testenv/kubeconfig)
	$(PY) -m modelrollout run --all-namespaces

.PHONY: demo demo-real demo-drift
demo: deps ## the main job: cluster, operator, Prometheus, model servers; a promotion and an automatic rollback (DEMO=real: on the real node)
	$(if $(filter real,$(DEMO)),$(PY) -m hack.realnode.demo,$(PY) hack/demo.py)
demo-drift: deps ## drift end to end: Drifted, a retraining Job, the retrained model through the canary gates
	$(PY) hack/demo_drift.py
demo-real: deps ## the demo's story on the real node: chart operator pod, Traefik, Prometheus via Kubernetes SD (root)
	$(PY) -m hack.realnode.demo

.PHONY: test test-setup app-images-for-tests
test: test-setup ## every test: unit, API server integration, model server, e2e
	$(PY) -m pytest $(PYTEST_ARGS)

# The real node's app images (debootstrap, pip: mostly waiting on downloads) are built while the Go
# tools compile (CPU); on a cold machine that overlap saves most of the image build's minutes. No
# --output-sync: it would hold each script's whole log until it ends (tens of minutes); their log
# lines carry timestamps and are written one line at a time.
test-setup:
	$(MAKE) --no-print-directory -j2 deps azurite client-venvs app-images-for-tests

app-images-for-tests: system-deps
	@if [ "$${MODELROLLOUT_REAL_NODE:-1}" != 0 ]; then bash hack/images/build.sh app; fi

.PHONY: bench
bench: bench-decisions bench-abtest bench-drift bench-rollback bench-server bench-operator ## every benchmark; figures go to docs/benchmarks.md

.PHONY: bench-rollback
bench-rollback: deps ## time-to-rollback per gate at a 10 s analysis interval (~5 min)
	$(PY) hack/bench_rollback.py

.PHONY: bench-real
bench-real: deps ## real node: time-to-rollback per gate and the traffic split per step through Traefik (~10 min, root)
	$(PY) -m hack.realnode.bench

.PHONY: bench-operator
bench-operator: deps ## the operator at 1,000 ModelDeployments on kwok nodes: RSS, CPU, API requests/s, first-write latency, checks while a Prometheus hangs (~20 min)
	$(PY) hack/bench_operator.py

.PHONY: bench-decisions
bench-decisions: venv ## false rollbacks, power and time to detect of the gates, real engine on simulated counters (~5 min)
	$(PY) hack/bench_decisions.py

.PHONY: bench-abtest
bench-abtest: venv ## how often an A/B test names the right winner, a tie or a timeout, real engine on simulated counters (~3 min)
	$(PY) hack/bench_abtest.py

.PHONY: bench-drift
bench-drift: venv ## false drift alarms per day and time to detect a shift in the continuous watch, real engine and gate (~3 min)
	$(PY) hack/bench_drift.py

.PHONY: bench-server
bench-server: venv system-deps ## model server vs raw session.run, raw ASGI/gRPC handlers, minimal FastAPI, KServe, MLServer; JSON, binary, gRPC (~11 min; root for ip netns)
	bash hack/bench-server.sh

IMAGE ?= modelrollout/operator:dev
SERVER_IMAGE ?= modelrollout/modelserver:dev

.PHONY: image image-testbed testbed
image: ## build the operator and model-server images: Docker if it runs, else buildah (chroot; overlay, or vfs) from a debootstrap base
	OPERATOR_IMAGE=$(IMAGE) SERVER_IMAGE=$(SERVER_IMAGE) bash hack/images/build.sh app
image-testbed: tools ## the real node's Traefik and Prometheus images (buildah)
	bash hack/images/build.sh testbed
testbed: venv ## on the running cluster's real node: load the images, install Traefik, Prometheus, the model store, the chart
	$(PY) -m hack.realnode.testbed

.PHONY: helm-lint
helm-lint: tools ## lint the chart in both watch modes
	$(BIN_DIR)/helm lint charts/modelrollout --strict --set watch.mode=cluster
	$(BIN_DIR)/helm lint charts/modelrollout --strict --set watch.mode=namespace

.PHONY: shellcheck
shellcheck: system-deps ## lint the shell scripts
	cd hack && shellcheck -x *.sh kind/*.sh node/*.sh images/*.sh

.PHONY: kind-up kind-deploy kind-e2e kind-down
kind-up: ## (Docker only) kind cluster + Envoy Gateway + a Gateway
	bash hack/kind/up.sh
kind-deploy: ## (Docker only) build and load both images, helm install the chart
	bash hack/kind/deploy.sh
kind-e2e: ## (Docker only) a good rollout and a rolled-back one on kind
	bash hack/kind/e2e.sh
kind-down: ## (Docker only) delete the kind cluster
	bash hack/kind/down.sh

.PHONY: lint
lint: venv ## ruff, and mypy over the operator and model-server packages ([tool.mypy] in pyproject.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
