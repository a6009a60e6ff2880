#!/usr/bin/env bash
# Entry point of the LabLink allocator image: a private PostgreSQL and the allocator server.
#
# Every start, in this order:
#   1. first start only: initdb, as the PostgreSQL OS user (PostgreSQL refuses to run as root);
#   2. writes the server's listen address, port, socket folder and pg_hba.conf BEFORE the server
#      starts. The seed image changed pg_hba.conf while the server was already up, which is why
#      remote clients only got in after a manual `/etc/init.d/postgresql restart`. Here the
#      server starts once, with its final configuration: there is nothing to restart;
#   3. starts PostgreSQL with `pg_ctl -w` (returns once it accepts connections);
#   4. first start only: loads `lablink db init-sql` (role, database, tables, trigger) as the
#      superuser over the Unix socket; later starts only set the role's password from the
#      environment, so a changed LABLINK_DB_PASSWORD takes effect;
#   5. `lablink db upgrade` (idempotent) as the lablink role over TCP with its password: the
#      same path the server then uses, proven before the server starts;
#   6. runs `lablink serve` and stops PostgreSQL when it exits (see "Signals" below).
# A second start on the same PGDATA re-initializes nothing and loses nothing.
#
# Environment [default]:
#   PGDATA                    data folder [/var/lib/postgresql/data]
#   PG_BIN                    folder of initdb, pg_ctl, psql [`pg_config --bindir`, else the
#                             newest /usr/lib/postgresql/*/bin, else the folder of pg_ctl on PATH]
#   PGPORT                    server port [LABLINK_DB_PORT, else 5432]
#   PG_USER                   OS user that runs PostgreSQL when this script runs as root [postgres]
#   LABLINK_PG_ALLOWED_CIDR   client networks allowed to log in remotely, comma-separated, as
#                             the lablink role on the lablink database, with scram-sha-256
#                             [none]. Nothing outside the container needs the database in this
#                             design: VMs talk to the allocator over HTTP (/vm_startup,
#                             /api/vm/status), and the allocator is the only database client.
#                             So the default allows no remote login at all. To open it (e.g. for
#                             an admin's psql): LABLINK_PG_ALLOWED_CIDR=10.0.0.0/16, publish the
#                             port (-p 5432:5432) and open it in the security group; 0.0.0.0/0
#                             (the seed's rule) works too but exposes the password to the world.
#   LABLINK_PG_LISTEN         listen_addresses [* when LABLINK_PG_ALLOWED_CIDR allows someone,
#                             else localhost]; 127.0.0.1 is added when missing (the app needs it)
#   LABLINK_PG_SOCKET_DIR     Unix socket folder, mode 0700 [PGDATA/../run]
#   LABLINK_PG_LOG            server log file [none: the server logs to this script's output,
#                             i.e. `docker logs`]
#   LABLINK_PG_PASSWORD_FILE  where a generated password is kept [PGDATA/../lablink-db-password]
#   LABLINK_DB_DBNAME, LABLINK_DB_USER   database and role [lablink, lablink]
#   LABLINK_DB_PASSWORD       the role's password. Unset: read from the password file, or
#                             generated into it (mode 0600) on first start; the path is printed.
#   DATABASE_URL (or LABLINK_DB_URL, LABLINK_DB_HOST)   use that external server instead: no
#                             local PostgreSQL is started; only steps 5 and 6 run.
#   LABLINK_APP_HOST, LABLINK_APP_PORT   where the server listens [0.0.0.0, 5000]
#   LABLINK_RUN_AS            as root, run the server as this user [lablink if such a user
#                             exists, as in the image; set it empty to keep root]
#   ...and every other LABLINK_<SECTION>_<KEY> of the app (`lablink config show` prints them).
#
# Signals: this script does not `exec` the server, because then nothing would be left to stop
# PostgreSQL after the server exits (and a supervisor such as tini would be one more moving
# part). Instead the server runs as a child and this script, PID 1 in the container, traps
# SIGTERM (docker stop) and SIGINT (Ctrl-C) and forwards them to it as SIGTERM: a background
# child of a non-interactive shell starts with SIGINT ignored, so SIGTERM is the signal it is
# sure to act on. The server runs in its own session, so it gets that one signal only, not
# also the terminal's. When the server has exited, for whatever reason, PostgreSQL gets a fast
# shutdown (`pg_ctl stop -m fast -w`) and the script exits with the server's status. A second
# signal kills a server that hangs; `docker stop -t` bounds the whole shutdown. A signal that
# arrives during steps 1-5 stops the script, and PostgreSQL too if it was started.
set -euo pipefail

readonly PG_SUPERUSER=postgres
readonly INIT_MARKER=lablink-initialized

PG_STARTED=0
SERVER_PID=
INTERRUPTED=0
SIGNALS_SEEN=0

log() { printf '%s start.sh: %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S')" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# Runs a PostgreSQL tool as the server's OS user: root drops privileges, anyone else must own
# PGDATA. `cd /` first: the tools complain when they cannot read the current folder.
as_pg() {
  if ((EUID == 0)); then
    (cd / && runuser -u "$PG_USER" -- "$@")
  else
    (cd / && "$@")
  fi
}

psql_super() {
  as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCKET_DIR" -p "$PGPORT" \
    -U "$PG_SUPERUSER" -d postgres
}

find_pg_bin() {
  local dir
  local -a found=()
  if [[ -n ${PG_BIN:-} ]]; then
    printf '%s\n' "$PG_BIN"
    return 0
  fi
  if command -v pg_config >/dev/null 2>&1 && dir=$(pg_config --bindir 2>/dev/null) &&
    [[ -x $dir/pg_ctl ]]; then
    printf '%s\n' "$dir"
    return 0
  fi
  for dir in /usr/lib/postgresql/*/bin; do
    if [[ -x $dir/pg_ctl ]]; then found+=("$dir"); fi
  done
  if ((${#found[@]})); then
    printf '%s\n' "${found[@]}" | sort -V | tail -n 1
    return 0
  fi
  if dir=$(command -v pg_ctl 2>/dev/null); then
    dirname "$dir"
    return 0
  fi
  return 1
}

check_identifier() { # $1: variable name, $2: value (same rule as the app's config)
  [[ $2 =~ ^[a-z_][a-z0-9_]{0,62}$ ]] || die "$1 must be a lowercase SQL identifier, got '$2'"
}

settings() {
  PGDATA=${PGDATA:-/var/lib/postgresql/data}
  PGDATA=${PGDATA%/}
  [[ $PGDATA == /* ]] || PGDATA=$PWD/$PGDATA
  PGPORT=${PGPORT:-${LABLINK_DB_PORT:-5432}}
  [[ $PGPORT =~ ^[0-9]{1,5}$ ]] || die "PGPORT must be a port number, got '$PGPORT'"
  PG_USER=${PG_USER:-postgres}
  DATA_PARENT=$(dirname "$PGDATA")
  SOCKET_DIR=${LABLINK_PG_SOCKET_DIR:-$DATA_PARENT/run}
  PASSWORD_FILE=${LABLINK_PG_PASSWORD_FILE:-$DATA_PARENT/lablink-db-password}
  PG_LOG=${LABLINK_PG_LOG:-}
  DB_NAME=${LABLINK_DB_DBNAME:-lablink}
  DB_USER=${LABLINK_DB_USER:-lablink}
  check_identifier LABLINK_DB_DBNAME "$DB_NAME"
  check_identifier LABLINK_DB_USER "$DB_USER"
  [[ $DB_USER != "$PG_SUPERUSER" ]] || die "LABLINK_DB_USER must not be the superuser"

  ALLOWED_CIDRS=()
  local cidr
  local -a items=()
  IFS=', ' read -r -a items <<<"${LABLINK_PG_ALLOWED_CIDR:-none}"
  for cidr in "${items[@]}"; do
    case $cidr in
      '' | none) ;;
      *)
        [[ $cidr =~ ^[0-9A-Fa-f:.]+/[0-9]{1,3}$ ]] ||
          die "LABLINK_PG_ALLOWED_CIDR: '$cidr' is not an address/prefix (e.g. 10.0.0.0/16)"
        ALLOWED_CIDRS+=("$cidr")
        ;;
    esac
  done

  if [[ -n ${LABLINK_PG_LISTEN:-} ]]; then
    LISTEN=$LABLINK_PG_LISTEN
  elif ((${#ALLOWED_CIDRS[@]})); then
    LISTEN='*'
  else
    LISTEN=localhost
  fi
  [[ $LISTEN =~ ^[A-Za-z0-9.:*,_\ -]+$ ]] || die "LABLINK_PG_LISTEN: unexpected characters"
  case ",${LISTEN// /}," in
    *,'*',* | *,localhost,* | *,127.0.0.1,*) ;;
    *) LISTEN="$LISTEN,127.0.0.1" ;;
  esac

  APP_HOST=${LABLINK_APP_HOST:-0.0.0.0}
  APP_PORT=${LABLINK_APP_PORT:-5000}
  LABLINK=$(command -v lablink) || die "the lablink command is not on PATH"
}

# Reuses LABLINK_DB_PASSWORD, or the password file, or makes one (mode 0600, never printed).
resolve_password() {
  if [[ -n ${LABLINK_DB_PASSWORD:-} ]]; then
    return 0
  fi
  if [[ -s $PASSWORD_FILE ]]; then
    LABLINK_DB_PASSWORD=$(<"$PASSWORD_FILE")
    log "database password of role $DB_USER: read from $PASSWORD_FILE"
    return 0
  fi
  local fresh temporary
  fresh=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
  mkdir -p "$(dirname "$PASSWORD_FILE")"
  temporary=$(mktemp "$PASSWORD_FILE.XXXXXX") # mktemp creates it with mode 0600
  printf '%s\n' "$fresh" >"$temporary"
  chmod 0600 "$temporary"
  mv -f "$temporary" "$PASSWORD_FILE"
  LABLINK_DB_PASSWORD=$fresh
  log "generated the database password of role $DB_USER: stored in $PASSWORD_FILE (mode 0600)"
}

prepare_folders() {
  mkdir -p "$PGDATA" "$SOCKET_DIR"
  if ((EUID == 0)); then
    id -u "$PG_USER" >/dev/null 2>&1 || die "no OS user '$PG_USER' to run PostgreSQL (PG_USER)"
    # A volume may come with another owner; PostgreSQL insists on owning all of its files.
    find "$PGDATA" "$SOCKET_DIR" ! -user "$PG_USER" -exec chown "$PG_USER:" {} +
  fi
  chmod 0700 "$PGDATA" "$SOCKET_DIR"
  as_pg test -w "$PGDATA" ||
    die "$PG_USER cannot write $PGDATA: its parent folders must be searchable by that user"
}

init_cluster() {
  log "initializing a new PostgreSQL cluster in $PGDATA"
  # Host lines use scram-sha-256; pg_hba.conf is rewritten below before the first start anyway.
  as_pg "$PG_BIN/initdb" -D "$PGDATA" -U "$PG_SUPERUSER" -E UTF8 --no-locale \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
}

write_server_config() {
  local cidr
  as_pg tee "$PGDATA/lablink.conf" >/dev/null <<EOF
# Written by start.sh before every start: change the environment, not this file.
listen_addresses = '$LISTEN'
port = $PGPORT
unix_socket_directories = '$SOCKET_DIR'
unix_socket_permissions = 0700
password_encryption = 'scram-sha-256'
EOF
  # Included last, so it wins over postgresql.conf; ALTER SYSTEM (postgresql.auto.conf) still
  # wins over both.
  if ! grep -qxF "include_if_exists = 'lablink.conf'" "$PGDATA/postgresql.conf"; then
    printf "\n# LabLink settings (start.sh)\ninclude_if_exists = 'lablink.conf'\n" |
      as_pg tee -a "$PGDATA/postgresql.conf" >/dev/null
  fi
  {
    echo "# Written by start.sh before every start: set LABLINK_PG_ALLOWED_CIDR, don't edit."
    echo "# TYPE  DATABASE  USER  ADDRESS  METHOD"
    # trust, but only through a socket in a folder (mode 0700) that only the server's OS user
    # can enter: in effect peer authentication, and it also works when not run as root.
    echo "local   all  $PG_SUPERUSER  trust"
    echo "host    all  all  127.0.0.1/32  scram-sha-256"
    echo "host    all  all  ::1/128  scram-sha-256"
    for cidr in "${ALLOWED_CIDRS[@]}"; do
      echo "host    $DB_NAME  $DB_USER  $cidr  scram-sha-256"
    done
  } | as_pg tee "$PGDATA/pg_hba.conf" >/dev/null
  if ((${#ALLOWED_CIDRS[@]})); then
    log "PostgreSQL: listening on '$LISTEN' port $PGPORT; remote logins as $DB_USER from" \
      "${ALLOWED_CIDRS[*]}"
  else
    log "PostgreSQL: listening on '$LISTEN' port $PGPORT; no remote logins" \
      "(LABLINK_PG_ALLOWED_CIDR is unset)"
  fi
}

# After a `docker kill` the old postmaster.pid stays behind, and in a new container its PID
# may belong to another process (often this very script): PostgreSQL would then refuse to
# start ("lock file already exists"). A PID that is alive but not a postgres process in this
# PGDATA is stale, so its lock files go.
clear_stale_lock() {
  local pidfile=$PGDATA/postmaster.pid pid='' comm='' cwd=''
  [[ -e $pidfile ]] || return 0
  read -r pid <"$pidfile" || true
  [[ $pid =~ ^[0-9]+$ ]] || return 0
  if [[ -d /proc/self ]]; then
    [[ -d /proc/$pid ]] || return 0 # gone: PostgreSQL clears that by itself
    read -r comm 2>/dev/null <"/proc/$pid/comm" || true
    cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null) || cwd=''
  elif ! kill -0 "$pid" 2>/dev/null; then
    return 0
  fi
  if [[ -z $comm || ($comm == postgres && (-z $cwd || $cwd -ef $PGDATA)) ]]; then
    die "PostgreSQL is already running on $PGDATA (pid $pid)"
  fi
  log "removing a stale postmaster.pid: pid $pid is now '$comm', not this PostgreSQL"
  rm -f "$pidfile" "$SOCKET_DIR/.s.PGSQL.$PGPORT.lock"
}

start_postgres() {
  local -a log_option=()
  if [[ -n $PG_LOG ]]; then log_option=(-l "$PG_LOG"); fi
  PG_STARTED=1 # set first: a start that times out may still leave a server to stop
  as_pg "$PG_BIN/pg_ctl" start -D "$PGDATA" -w -t "${LABLINK_PG_START_TIMEOUT:-60}" -s \
    "${log_option[@]}"
}

# shellcheck disable=SC2317,SC2329  # called from a trap
stop_postgres() {
  ((PG_STARTED)) || return 0
  PG_STARTED=0
  as_pg "$PG_BIN/pg_ctl" status -D "$PGDATA" >/dev/null 2>&1 || return 0
  log "stopping PostgreSQL"
  as_pg "$PG_BIN/pg_ctl" stop -D "$PGDATA" -m fast -w -t 60 -s ||
    as_pg "$PG_BIN/pg_ctl" stop -D "$PGDATA" -m immediate -w -s ||
    log "could not stop PostgreSQL in $PGDATA"
}

load_schema_or_sync_password() {
  if [[ ! -e $PGDATA/$INIT_MARKER ]]; then
    log "creating role $DB_USER, database $DB_NAME and the schema (lablink db init-sql)"
    # Safe to repeat: a first start that died half-way simply runs it again.
    "$LABLINK" db init-sql | psql_super
    as_pg touch "$PGDATA/$INIT_MARKER"
  else
    # Doubled quotes make the literal; it goes through stdin, never a command line.
    printf "ALTER ROLE %s WITH LOGIN PASSWORD '%s';\n" \
      "$DB_USER" "${LABLINK_DB_PASSWORD//\'/\'\'}" | psql_super
  fi
}

start_local_postgres() {
  PG_BIN=$(find_pg_bin) || die "no PostgreSQL server binaries found: set PG_BIN"
  local tool
  for tool in initdb pg_ctl psql; do
    [[ -x $PG_BIN/$tool ]] || die "$PG_BIN/$tool is missing (PG_BIN)"
  done
  prepare_folders
  clear_stale_lock # before anything is written: refuses a PGDATA whose server is running
  resolve_password
  export LABLINK_DB_PASSWORD LABLINK_DB_DBNAME=$DB_NAME LABLINK_DB_USER=$DB_USER
  if [[ ! -e $PGDATA/PG_VERSION ]]; then
    init_cluster
  fi
  write_server_config
  start_postgres
  load_schema_or_sync_password
  # The app reaches the server like any remote client: TCP and the role's password.
  export LABLINK_DB_HOST=127.0.0.1 LABLINK_DB_PORT=$PGPORT
}

resolve_run_as() {
  RUN_AS=()
  ((EUID == 0)) || return 0
  local user
  if [[ -v LABLINK_RUN_AS ]]; then
    user=$LABLINK_RUN_AS
  elif id -u lablink >/dev/null 2>&1; then
    user=lablink
  else
    user=
  fi
  [[ -n $user && $user != root ]] || return 0
  id -u "$user" >/dev/null 2>&1 || die "LABLINK_RUN_AS: no user '$user'"
  local home
  home=$(getent passwd "$user" | cut -d: -f6)
  if [[ -n ${LABLINK_APP_DATA_DIR:-} ]]; then
    mkdir -p "$LABLINK_APP_DATA_DIR"
    chown "$user:" "$LABLINK_APP_DATA_DIR"
  fi
  # setpriv execs (no fork), so the server keeps the PID this script signals.
  RUN_AS=(env "HOME=$home" "USER=$user" "LOGNAME=$user"
    setpriv "--reuid=$(id -u "$user")" "--regid=$(id -g "$user")" --init-groups --)
}

# shellcheck disable=SC2317,SC2329  # called from a trap
on_signal_while_serving() {
  INTERRUPTED=1
  SIGNALS_SEEN=$((SIGNALS_SEEN + 1))
  if ((SIGNALS_SEEN == 1)); then
    log "stopping the allocator server (pid $SERVER_PID)"
    kill -TERM "$SERVER_PID" 2>/dev/null || true
  else
    log "second signal: killing the allocator server (pid $SERVER_PID)"
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
}

# shellcheck disable=SC2317,SC2329  # called from a trap
on_exit() {
  local status=$?
  set +e
  trap '' TERM INT
  if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID"
  fi
  stop_postgres
  exit "$status"
}

serve() {
  local status
  local -a detach=()
  resolve_run_as
  # A session of its own (setsid execs in place: same PID): a Ctrl-C on a terminal, which goes
  # to the whole foreground process group, then reaches only this script, and the server gets
  # exactly one SIGTERM, from here.
  if command -v setsid >/dev/null 2>&1; then detach=(setsid); fi
  trap on_signal_while_serving TERM INT
  "${RUN_AS[@]}" "${detach[@]}" "$LABLINK" serve --host "$APP_HOST" --port "$APP_PORT" &
  SERVER_PID=$!
  # `wait` returns early when a trapped signal arrives: wait again until the server is gone.
  while :; do
    INTERRUPTED=0
    if wait "$SERVER_PID"; then status=0; else status=$?; fi
    ((INTERRUPTED)) || break
  done
  SERVER_PID=
  log "the allocator server exited with status $status"
  exit "$status"
}

main() {
  trap on_exit EXIT
  trap 'exit 143' TERM
  trap 'exit 130' INT
  settings
  if [[ -n ${DATABASE_URL:-}${LABLINK_DB_URL:-}${LABLINK_DB_HOST:-} ]]; then
    log "an external database is configured: not starting a local PostgreSQL"
  else
    start_local_postgres
  fi
  "$LABLINK" db upgrade
  serve
}

main "$@"
