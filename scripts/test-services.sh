#!/usr/bin/env bash
# Installs (once) what the test suite talks to: PostgreSQL (started on loopback), Chromium
# (for the browser tests), OpenSSH's server and iproute2 (the multi-host test makes hosts of
# network namespaces, each with its own sshd, which it starts and stops itself), and Slurm with
# munge (a controller here and three compute nodes in network namespaces, started once and left
# running, as PostgreSQL is: tests/slurm_cluster.py; the nodes reach PostgreSQL on the bridge).
# Prints the environment the tests read; a machine without root or apt skips with a reason.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'test-services: %s\n' "$*" >&2; }
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo -n"

need=()
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v slurmctld >/dev/null 2>&1 || need+=(slurm-wlm)
command -v munged >/dev/null 2>&1 || need+=(munge)
if [ ${#need[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1 && $SUDO true 2>/dev/null; then
    say "installing ${need[*]} from Debian's packages"
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
  else
    say "cannot install ${need[*]} (no apt-get or no root); those tests will be skipped"
  fi
fi

# PostgreSQL: a private cluster in a temporary directory, on a fixed port; pg_hba.conf lets in
# loopback only, and the Slurm test nodes' subnet once they are up.
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -n "$pgbin" ] && [ -x "$pgbin/postgres" ]; then
  PGDIR=${EASGD_TEST_PGDIR:-/tmp/easgd-test-pg}
  PGPORT=${EASGD_TEST_PGPORT:-55432}
  runas=()
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd -r postgres
    runas=(runuser -u postgres --)
  fi
  if ! "${runas[@]}" "$pgbin/pg_ctl" -D "$PGDIR" status >/dev/null 2>&1; then
    rm -rf "$PGDIR"; mkdir -p "$PGDIR"
    [ "$(id -u)" = 0 ] && chown postgres "$PGDIR"
    "${runas[@]}" "$pgbin/initdb" -D "$PGDIR" -A trust -U easgd >/dev/null
    "${runas[@]}" "$pgbin/pg_ctl" -D "$PGDIR" -l "$PGDIR/log" -w \
      -o "-p $PGPORT -k /tmp -c listen_addresses=* -c fsync=off" start >/dev/null
    say "PostgreSQL started on 127.0.0.1:$PGPORT"
  fi
  "$pgbin/psql" -h 127.0.0.1 -p "$PGPORT" -U easgd -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname='easgd_test'" | grep -q 1 ||
    "$pgbin/createdb" -h 127.0.0.1 -p "$PGPORT" -U easgd easgd_test
  echo "export EASGD_TEST_POSTGRES_URL=postgresql+psycopg://easgd@127.0.0.1:$PGPORT/easgd_test"
fi
if command -v chromium >/dev/null 2>&1; then
  echo "export EASGD_TEST_CHROMIUM=$(command -v chromium)"
fi

# Slurm: the test cluster, unless it already answers.
SLURMDIR=${EASGD_TEST_SLURMDIR:-/tmp/easgd-test-slurm}
if [ "$(id -u)" = 0 ] && command -v slurmctld >/dev/null 2>&1; then
  nodes=$(SLURM_CONF="$SLURMDIR/slurm.conf" timeout 10 sinfo -h -N 2>/dev/null | wc -l || true)
  if [ -f "$SLURMDIR/cluster.json" ] && [ "$nodes" = 3 ]; then
    echo "export SLURM_CONF=$SLURMDIR/slurm.conf"
    echo "export EASGD_TEST_SLURM=$SLURMDIR/cluster.json"
  else
    .venv/bin/python -m tests.slurm_cluster stop "$SLURMDIR" 2>/dev/null || true
    if made=$(.venv/bin/python -m tests.slurm_cluster start "$SLURMDIR" 2>"$SLURMDIR.log"); then
      say "Slurm test cluster started (a controller, 3 nodes in network namespaces)"
      echo "$made"
    else
      say "no Slurm test cluster: $(tail -1 "$SLURMDIR.log"); those tests will be skipped"
    fi
  fi
  # The nodes' way to the store: PostgreSQL on the bridge's address, for their subnet only.
  if [ -n "${PGDIR:-}" ] && [ -f "$SLURMDIR/cluster.json" ]; then
    gateway=$(.venv/bin/python -c "import json,sys; print(json.load(open(sys.argv[1]))['gateway'])" \
      "$SLURMDIR/cluster.json")
    line="host all all ${gateway%.*}.0/24 trust"
    if ! grep -qxF "$line" "$PGDIR/pg_hba.conf"; then
      echo "$line" >>"$PGDIR/pg_hba.conf"
      "${runas[@]}" "$pgbin/pg_ctl" -D "$PGDIR" reload >/dev/null
    fi
    echo "export EASGD_TEST_SLURM_DB_URL=postgresql+psycopg://easgd@$gateway:$PGPORT/easgd_test"
  fi
fi
