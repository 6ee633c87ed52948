#!/usr/bin/env bash
# Starts and stops the real services the tests talk to, each on a free loopback port, with its
# state in a temporary directory. Works as root (servers that refuse root run as an unprivileged
# user) or as a normal user.
#
#   scripts/test-services.sh start [STATE_DIR]   # writes STATE_DIR/env (export lines)
#   scripts/test-services.sh stop  [STATE_DIR]
#   scripts/test-services.sh status [STATE_DIR]
#
# Tests read the URLs from the environment: HARMAR_TEST_PG_URL, HARMAR_TEST_REDIS_URL,
# HARMAR_TEST_SMTP_URL + HARMAR_TEST_SMTP_DIR (an SMTP sink saving each mail as a file in DIR/new),
# HARMAR_TEST_OIDC_ISSUER + HARMAR_TEST_OIDC_KEYS (a real OpenID Connect provider, npm
# oidc-provider, see tests/services/oidc_provider.js; its signing keys with private parts),
# HARMAR_TEST_MARIADB_URL (a MariaDB server, root without a password on loopback; the data module's
# third SQL backend),
# HARMAR_TEST_S3_URL (npm s3rver, an S3-compatible server, with the bucket harmar-test, behind a
# gate that checks SigV4 signatures).
set -euo pipefail

cmd=${1:-}
state=${2:-${HARMAR_TEST_STATE:-$(pwd)/build/test-services}}
envfile="$state/env"
root="$(cd "$(dirname "$0")/.." && pwd)"
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)

log() { echo "test-services: $*" >&2; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Runs a command as the unprivileged owner of the PostgreSQL data when we are root.
as_pg() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u "$pg_user" -- "$@"
  else
    "$@"
  fi
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: polls readiness, bounded
  local secs=$1 what=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then log "$what did not become ready in ${secs}s"; return 1; fi
    sleep 0.1
  done
}

start_postgres() {
  local port dir
  port=$(free_port)
  dir=$(mktemp -d /tmp/harmar-pg.XXXXXX)
  pg_user=$(id -un)
  if [[ $(id -u) -eq 0 ]]; then
    pg_user=postgres
    id -u postgres >/dev/null 2>&1 || useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin postgres
    chown "$pg_user" "$dir"
  fi
  as_pg "$PG_BIN/initdb" -D "$dir/data" -U harmar -A trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; return 1; }
  # Durability is not under test here; speed is. Each test database is thrown away.
  as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 start \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" >/dev/null ||
    { cat "$dir/server.log" >&2; return 1; }
  as_pg "$PG_BIN/createdb" -h 127.0.0.1 -p "$port" -U harmar harmar_test
  {
    echo "export HARMAR_TEST_PG_URL=postgres://harmar@127.0.0.1:$port/harmar_test"
    echo "export HARMAR_TEST_PG_DIR=$dir"
    echo "export HARMAR_TEST_PG_USER=$pg_user"
  } >>"$envfile"
  log "postgresql on 127.0.0.1:$port ($dir)"
}

start_redis() {
  local port dir
  port=$(free_port)
  dir=$(mktemp -d /tmp/harmar-redis.XXXXXX)
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" >/dev/null
  wait_for 10 redis redis-cli -p "$port" ping
  {
    echo "export HARMAR_TEST_REDIS_URL=redis://127.0.0.1:$port"
    echo "export HARMAR_TEST_REDIS_DIR=$dir"
  } >>"$envfile"
  log "redis on 127.0.0.1:$port ($dir)"
}

# python3-aiosmtpd: every mail it receives becomes a file (tests/services/smtp_sink.py).
start_smtp() {
  local port dir
  port=$(free_port)
  dir=$(mktemp -d /tmp/harmar-smtp.XXXXXX)
  setsid /usr/bin/python3 "$root/tests/services/smtp_sink.py" --port "$port" --dir "$dir/mail" \
    </dev/null >"$dir/smtp.log" 2>&1 &
  echo $! >"$dir/smtp.pid"
  wait_for 15 "smtp sink" bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" || { cat "$dir/smtp.log" >&2; return 1; }
  {
    echo "export HARMAR_TEST_SMTP_URL=smtp://127.0.0.1:$port"
    echo "export HARMAR_TEST_SMTP_DIR=$dir/mail"
    echo "export HARMAR_TEST_SMTP_STATE=$dir"
  } >>"$envfile"
  log "smtp sink on 127.0.0.1:$port ($dir/mail)"
}

# mariadb-server, its data in a temp dir. As root, mariadbd drops to the unprivileged user mysql
# itself (--user); runuser would stay behind as its parent, holding our stdout open.
start_mariadb() {
  local port dir user=()
  if [[ ! -x /usr/sbin/mariadbd ]]; then
    log "mariadb-server is not installed (run scripts/install-deps.sh): no MariaDB"
    return 0
  fi
  port=$(free_port)
  dir=$(mktemp -d /tmp/harmar-mariadb.XXXXXX)
  if [[ $(id -u) -eq 0 ]]; then
    id -u mysql >/dev/null 2>&1 || useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin mysql
    chown mysql "$dir"
    user=(--user=mysql)
  fi
  mariadb-install-db --no-defaults --datadir="$dir/data" "${user[@]}" \
    --auth-root-authentication-method=normal --skip-test-db >"$dir/install.log" 2>&1 ||
    { cat "$dir/install.log" >&2; return 1; }
  # Durability is not under test here; speed is.
  setsid /usr/sbin/mariadbd --no-defaults "${user[@]}" --datadir="$dir/data" --socket="$dir/mysqld.sock" \
    --port="$port" --bind-address=127.0.0.1 --pid-file="$dir/mysqld.pid" --log-error="$dir/error.log" \
    --skip-log-bin --skip-name-resolve --max-connections=600 --innodb-buffer-pool-size=128M \
    --innodb-flush-log-at-trx-commit=0 --innodb-doublewrite=0 --innodb-fast-shutdown=2 \
    --innodb-buffer-pool-dump-at-shutdown=0 --innodb-buffer-pool-load-at-startup=0 </dev/null >/dev/null 2>&1 &
  wait_for 60 mariadb mariadb --no-defaults -h 127.0.0.1 -P "$port" -u root -e "SELECT 1" ||
    { cat "$dir/error.log" >&2; return 1; }
  mariadb --no-defaults -h 127.0.0.1 -P "$port" -u root -e "CREATE DATABASE harmar_test"
  {
    echo "export HARMAR_TEST_MARIADB_URL=mysql://root@127.0.0.1:$port/harmar_test"
    echo "export HARMAR_TEST_MARIADB_DIR=$dir"
  } >>"$envfile"
  log "mariadb on 127.0.0.1:$port ($dir)"
}

# npm oidc-provider (installed by scripts/install-deps.sh into tests/services/node_modules).
start_oidc() {
  local port dir
  if [[ ! -d $root/tests/services/node_modules/oidc-provider ]]; then
    log "tests/services/node_modules is missing (run scripts/install-deps.sh): no OIDC provider"
    return 0
  fi
  port=$(free_port)
  dir=$(mktemp -d /tmp/harmar-oidc.XXXXXX)
  setsid node "$root/tests/services/oidc_provider.js" --port "$port" --dir "$dir" </dev/null >"$dir/oidc.log" 2>&1 &
  echo $! >"$dir/oidc.pid"
  wait_for 30 "oidc provider" curl -fsS "http://127.0.0.1:$port/.well-known/openid-configuration" ||
    { cat "$dir/oidc.log" >&2; return 1; }
  {
    echo "export HARMAR_TEST_OIDC_ISSUER=http://127.0.0.1:$port"
    echo "export HARMAR_TEST_OIDC_KEYS=$dir/oidc-keys.json"
    echo "export HARMAR_TEST_OIDC_DIR=$dir"
  } >>"$envfile"
  log "oidc provider on 127.0.0.1:$port ($dir)"
}

# npm s3rver (tests/services/node_modules): S3 on the filesystem with one bucket; its account is
# S3RVER:S3RVER. s3rver does not check V4 signatures, so tests reach it through
# tests/services/s3_sigv4_gate.py, which checks them with botocore the way S3 does.
start_s3() {
  local port gate dir
  if [[ ! -d $root/tests/services/node_modules/s3rver ]]; then
    log "tests/services/node_modules is missing (run scripts/install-deps.sh): no S3 server"
    return 0
  fi
  port=$(free_port)
  dir=$(mktemp -d /tmp/harmar-s3.XXXXXX)
  # s3rver's listing continuation tokens are DES-encrypted, which OpenSSL 3 keeps in its legacy provider.
  setsid node --openssl-legacy-provider "$root/tests/services/node_modules/s3rver/bin/s3rver.js" -d "$dir/data" -a 127.0.0.1 -p "$port" \
    --configure-bucket harmar-test --silent </dev/null >"$dir/s3.log" 2>&1 &
  echo $! >"$dir/s3.pid"
  wait_for 30 "s3rver" curl -fsS "http://127.0.0.1:$port/harmar-test" || { cat "$dir/s3.log" >&2; return 1; }
  gate=$(free_port)
  setsid /usr/bin/python3 "$root/tests/services/s3_sigv4_gate.py" --port "$gate" --upstream "127.0.0.1:$port" \
    --key S3RVER:S3RVER </dev/null >"$dir/gate.log" 2>&1 &
  echo $! >"$dir/gate.pid"
  wait_for 15 "s3 signature gate" curl -fsS "http://127.0.0.1:$gate/harmar-test" || { cat "$dir/gate.log" >&2; return 1; }
  {
    echo "export HARMAR_TEST_S3_URL='s3://S3RVER:S3RVER@127.0.0.1:$gate/harmar-test?tls=0'"
    echo "export HARMAR_TEST_S3_DIR=$dir"
  } >>"$envfile"
  log "s3rver on 127.0.0.1:$port behind a SigV4 gate on 127.0.0.1:$gate ($dir)"
}

stop_pid_dir() {  # stop_pid_dir DIR PIDFILE_NAME: ends the process recorded there, removes DIR
  local dir=$1 pid
  [[ -n $dir && -d $dir ]] || return 0
  if [[ -f $dir/$2 ]]; then
    pid=$(cat "$dir/$2")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}

stop_all() {
  [[ -f $envfile ]] || return 0
  # shellcheck disable=SC1090
  source "$envfile"
  if [[ -n ${HARMAR_TEST_PG_DIR:-} && -d $HARMAR_TEST_PG_DIR ]]; then
    pg_user=${HARMAR_TEST_PG_USER:-$(id -un)}
    as_pg "$PG_BIN/pg_ctl" -D "$HARMAR_TEST_PG_DIR/data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
    rm -rf "$HARMAR_TEST_PG_DIR"
  fi
  # Waits for redis to exit: removing its dir while it still writes there fails (and, under
  # set -e, would leave the services after it running).
  stop_pid_dir "${HARMAR_TEST_REDIS_DIR:-}" redis.pid
  stop_pid_dir "${HARMAR_TEST_SMTP_STATE:-}" smtp.pid
  stop_pid_dir "${HARMAR_TEST_OIDC_DIR:-}" oidc.pid
  stop_pid_dir "${HARMAR_TEST_MARIADB_DIR:-}" mysqld.pid
  if [[ -n ${HARMAR_TEST_S3_DIR:-} && -f $HARMAR_TEST_S3_DIR/gate.pid ]]; then
    kill "$(cat "$HARMAR_TEST_S3_DIR/gate.pid")" 2>/dev/null || true
  fi
  stop_pid_dir "${HARMAR_TEST_S3_DIR:-}" s3.pid
  rm -f "$envfile"
  log "stopped"
}

alive() {
  [[ -f $envfile ]] || return 1
  # shellcheck disable=SC1090
  ( source "$envfile"
    "$PG_BIN/pg_isready" -q -d "$HARMAR_TEST_PG_URL" &&
    redis-cli -u "$HARMAR_TEST_REDIS_URL" ping >/dev/null &&
    kill -0 "$(cat "$HARMAR_TEST_SMTP_STATE/smtp.pid")" 2>/dev/null &&
    { [[ -z ${HARMAR_TEST_OIDC_DIR:-} ]] || kill -0 "$(cat "$HARMAR_TEST_OIDC_DIR/oidc.pid")" 2>/dev/null; } &&
    { [[ -z ${HARMAR_TEST_MARIADB_DIR:-} ]] || kill -0 "$(cat "$HARMAR_TEST_MARIADB_DIR/mysqld.pid")" 2>/dev/null; } &&
    { [[ ! -d $root/tests/services/node_modules/s3rver ]] ||
      { kill -0 "$(cat "${HARMAR_TEST_S3_DIR:-/nonexistent}/s3.pid")" &&
        kill -0 "$(cat "$HARMAR_TEST_S3_DIR/gate.pid")"; } 2>/dev/null; } )
}

case $cmd in
  start)
    mkdir -p "$state"
    if alive; then log "already running"; cat "$envfile"; exit 0; fi
    stop_all
    : >"$envfile"
    trap 'stop_all' ERR
    start_postgres
    start_redis
    start_smtp
    start_oidc
    start_mariadb
    start_s3
    trap - ERR
    cat "$envfile"
    ;;
  stop) stop_all ;;
  status) if alive; then cat "$envfile"; else log "not running"; exit 1; fi ;;
  *) echo "usage: $0 start|stop|status [STATE_DIR]" >&2; exit 2 ;;
esac
