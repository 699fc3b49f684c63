#!/usr/bin/env bash
# Runs the whole test suite, on a fresh machine too: first it sets up what the tests talk
# to (scripts/test-peers.sh: the Python test peers in a project-local virtual environment,
# Chromium and its driver, PostgreSQL, NATS and the PostgreSQL server binaries), then runs
# the unit tests and the integration tests, each on SQLite and on the PostgreSQL server at
# $ORDO_TEST_PG_URL (default postgres://postgres@127.0.0.1:5432/test; each test creates its
# own database there and drops it afterwards). Arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/test-peers.sh
source scripts/test-peers.sh
cargo test --locked --all-targets "$@"
