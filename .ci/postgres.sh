#!/usr/bin/env bash
# Makes a PostgreSQL database for Taskdeck's tests (and for trying the PostgreSQL store by
# hand) and prints its URL on stdout: installs Debian's `postgresql` package when no server is
# installed, starts a cluster listening on loopback only (as the postgres user), and creates
# the role and database `taskdeck` (password `taskdeck`). Idempotent: a running cluster and an
# existing database are reused.
set -euo pipefail
log() { echo "$@" >&2; }
sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi; }

if ! command -v pg_lsclusters >/dev/null; then
  log "== installing postgresql (Debian's package)"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -q postgresql >&2 || { $sudo apt-get update -q >&2 && $sudo apt-get install -y -q postgresql >&2; }
fi

# The newest installed major version, and its first cluster (made if there is none).
version=$(ls /usr/lib/postgresql | sort -n | tail -1)
cluster=$(pg_lsclusters -h | awk -v v="$version" '$1 == v { print $2; exit }')
if [ -z "$cluster" ]; then
  cluster=main
  $sudo pg_createcluster "$version" "$cluster" >&2
fi
port=$(pg_lsclusters -h | awk -v v="$version" -v c="$cluster" '$1 == v && $2 == c { print $3 }')
conf="/etc/postgresql/$version/$cluster/postgresql.conf"
# Loopback only; enough connections for several engines and the tests' pools.
grep -q "^listen_addresses = 'localhost'" "$conf" || echo "listen_addresses = 'localhost'" | $sudo tee -a "$conf" >/dev/null
grep -q "^max_connections = 300" "$conf" || echo "max_connections = 300" | $sudo tee -a "$conf" >/dev/null
if ! pg_lsclusters -h | awk -v v="$version" -v c="$cluster" '$1 == v && $2 == c { print $4 }' | grep -q online; then
  log "== starting PostgreSQL $version/$cluster on 127.0.0.1:$port"
  $sudo pg_ctlcluster "$version" "$cluster" start >&2
fi
for _ in $(seq 1 30); do
  as_postgres psql -p "$port" -qAtc 'select 1' >/dev/null 2>&1 && break
  sleep 1
done
as_postgres psql -p "$port" -qAtc "select 1 from pg_roles where rolname = 'taskdeck'" | grep -q 1 \
  || as_postgres psql -p "$port" -qc "create role taskdeck login password 'taskdeck'" >&2
as_postgres psql -p "$port" -qAtc "select 1 from pg_database where datname = 'taskdeck'" | grep -q 1 \
  || as_postgres psql -p "$port" -qc "create database taskdeck owner taskdeck" >&2
echo "postgres://taskdeck:taskdeck@127.0.0.1:$port/taskdeck"
