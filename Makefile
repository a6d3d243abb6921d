# The two commands of the README, and a few helpers. Every target bootstraps what it needs.
.PHONY: run test bench soak image checklist bootstrap lint format lock

run: bootstrap
	@mkdir -p .local
	scripts/run.sh

test: bootstrap
	scripts/test.sh $(ARGS)

# The hot paths against their targets on loopback (docs/performance.md); its own database and
# Redis, about three minutes. Writes bench/results.json.
bench: bootstrap
	.venv/bin/python -m bench.run $(ARGS)

# The simulator's city against the same stack with workers recycled as in production: socket
# drops, ping -> customer, endpoint p99s, memory slopes, CPU. A few minutes (ARGS="--minutes
# 30" for longer). Merges a "soak" key into bench/results.json.
soak: bootstrap
	.venv/bin/python -m bench.soak $(ARGS)

# The container image from the Dockerfile, built with Podman (installed if missing); prints its
# size. Where no registry is reachable it builds on a stand-in base made from Debian packages.
image:
	scripts/image.sh

# docs/checklist.md: every line of the user's checklist, its status and the tests behind it.
checklist: bootstrap
	CHECKLIST_RECORD=$(CURDIR)/.local/checklist .venv/bin/pytest --collect-only -q -p no:cacheprovider > /dev/null
	CHECKLIST_RECORD=$(CURDIR)/.local/checklist .venv/bin/python -m checklist.report

bootstrap:
	scripts/bootstrap.sh

# docs/api/asyncapi.yaml is checked against AsyncAPI's own schema: @asyncapi/specs 6.11.1's
# schemas/3.0.0-without-$id.json, vendored as published (every definition in one file).
lint: bootstrap
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	shellcheck scripts/*.sh .ci/run entrypoint.sh deploy/docker/*.sh deploy/podman/*.sh
	.venv/bin/hadolint Dockerfile
	.venv/bin/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
	.venv/bin/check-jsonschema --schemafile deploy/schemas/railway.schema.json deploy/railway/*.json
	.venv/bin/check-jsonschema --schemafile deploy/schemas/asyncapi-3.0.0.schema.json docs/api/asyncapi.yaml
	.venv/bin/kubernetes-validate --strict --quiet deploy/k8s/*.yaml

format: bootstrap
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

# After editing dependencies in pyproject.toml: refresh uv.lock and the pip fallback.
lock:
	.tools/uv/bin/uv lock
	.tools/uv/bin/uv export --frozen --no-emit-project --all-groups --format requirements-txt -o requirements.lock --quiet
