#!/usr/bin/env bash
# Runs the whole test suite: unit tests, and the integration tests on SQLite and on the
# PostgreSQL server at $ORDO_TEST_PG_URL (default postgres://postgres@127.0.0.1:5432/test;
# each test creates its own database there and drops it afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --locked --all-targets "$@"
