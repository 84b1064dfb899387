#!/usr/bin/env bash
# A local PostgreSQL for the tests that need one (the audit store's PostgreSQL backend).
#
# Run as root; idempotent. Installs the Debian package if missing, creates and starts
# a cluster, a role `datahavn` (its random password kept in a 0600 file under
# /var/lib/datahavn-test/) and a database `datahavn_test` owned by it, waits until
# the role can connect over TCP, then prints one line on stdout, the SQLAlchemy URL:
#     DATAHAVN_TEST_PG_URL=$(bash scripts/postgres.sh)
# Everything else goes to stderr.
set -euo pipefail

STATE=/var/lib/datahavn-test
PWFILE=$STATE/postgres-password
ROLE=datahavn
DB=datahavn_test

log() { echo "postgres.sh: $*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    log "must run as root"
    exit 1
fi

if ! command -v pg_lsclusters >/dev/null || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    log "installing postgresql"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi

# The first cluster `pg_lsclusters` lists (lowest version), preferring one already online.
# Columns: version, name, port, status, owner, data dir, log file.
pick_cluster() {
    pg_lsclusters --no-header | awk '$4 ~ /^online/ { print $1, $2, $3; found = 1; exit }
        END { if (!found) exit 1 }' \
        || pg_lsclusters --no-header | awk 'NR == 1 { print $1, $2, $3 }'
}

cluster=$(pick_cluster)
if [ -z "$cluster" ]; then
    version=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n 1)
    log "creating cluster $version/main"
    pg_createcluster "$version" main >&2
    cluster=$(pick_cluster)
fi
read -r version name port <<<"$cluster"

if ! pg_lsclusters --no-header "$version" "$name" | awk '{ exit !($4 ~ /^online/) }'; then
    log "starting cluster $version/$name on port $port"
    pg_ctlcluster "$version" "$name" start >&2
fi

for _ in $(seq 1 60); do
    pg_isready -q -h 127.0.0.1 -p "$port" && break
    sleep 1
done
if ! pg_isready -q -h 127.0.0.1 -p "$port"; then
    log "cluster $version/$name does not accept connections on 127.0.0.1:$port"
    exit 1
fi

# Reuse the password so that repeated runs (and URLs already handed out) stay valid.
# Hex only, so it needs no quoting in SQL nor escaping in the URL.
install -d -m 0700 "$STATE"
if [ ! -s "$PWFILE" ]; then
    (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$PWFILE")
fi
chmod 0600 "$PWFILE"
password=$(cat "$PWFILE")

# As the postgres superuser over the unix socket (peer authentication). SQL goes on stdin
# so that the password never shows in a process list.
as_postgres() { runuser -u postgres -- psql -X -q -At -v ON_ERROR_STOP=1 -p "$port" -d postgres "$@"; }

if [ "$(as_postgres -c "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" = 1 ]; then
    verb=ALTER
else
    log "creating role $ROLE"
    verb=CREATE
fi
as_postgres >&2 <<SQL
$verb ROLE $ROLE LOGIN NOSUPERUSER NOCREATEROLE PASSWORD '$password';
SQL

if [ "$(as_postgres -c "SELECT 1 FROM pg_database WHERE datname = '$DB'")" = 1 ]; then
    as_postgres -c "ALTER DATABASE $DB OWNER TO $ROLE" >&2
else
    log "creating database $DB"
    as_postgres -c "CREATE DATABASE $DB OWNER $ROLE" >&2
fi

url="postgresql+psycopg://$ROLE:$password@127.0.0.1:$port/$DB"
for _ in $(seq 1 30); do
    if PGPASSWORD=$password psql -X -q -At -h 127.0.0.1 -p "$port" -U "$ROLE" -d "$DB" -c 'SELECT 1' >/dev/null 2>&1; then
        echo "$url"
        exit 0
    fi
    sleep 1
done
log "role $ROLE cannot connect to $DB on 127.0.0.1:$port"
exit 1
