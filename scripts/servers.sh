#!/usr/bin/env bash
# Starts and stops the real servers the integration tests run against, as local processes on
# loopback: a throwaway PostgreSQL 15 cluster, a private ClickHouse (Debian's 18.16) and the
# Kafka-protocol broker tansu (sqlite storage). Everything (data, config, logs, pids) lives in one
# run directory, wiped on every start.
#
#   scripts/servers.sh start [DIR]          start all three, wait until they answer, write DIR/env
#                                           and print its `export` lines on stdout (logs go to stderr):
#                                             eval "$(scripts/servers.sh start)"
#   scripts/servers.sh stop [DIR]           stop what `start` started (quiet if already gone)
#   scripts/servers.sh status [DIR]         one line per server; exit 0 when all answer
#   scripts/servers.sh env [DIR]            print DIR/env again
#   scripts/servers.sh ctl SERVER ACTION [DIR]
#                                           SERVER: postgres|clickhouse|tansu,
#                                           ACTION: start|stop|restart|status (what DIR/pg-ctl,
#                                           DIR/ch-ctl and DIR/tansu-ctl call)
#
# The environment `start` prints (and writes to DIR/env), for the tests:
#   FLEETSTREAM_TEST_SERVERS_DIR=DIR
#   FLEETSTREAM_TEST_KAFKA=127.0.0.1:PORT                                 tansu (Kafka protocol)
#   FLEETSTREAM_TEST_POSTGRES=postgres://postgres@127.0.0.1:PORT/postgres  trust auth
#   FLEETSTREAM_TEST_CLICKHOUSE=http://127.0.0.1:PORT                      HTTP interface
#   FLEETSTREAM_TEST_CLICKHOUSE_TCP=127.0.0.1:PORT                         native (clickhouse-client)
#   FLEETSTREAM_TEST_{TANSU,POSTGRES,CLICKHOUSE}_CTL=DIR/{tansu,pg,ch}-ctl
# A *_CTL is a command taking start|stop|restart|status: stop waits until the server is down,
# start until it answers again, on the same port with the same data; status exits 0 when it
# answers, 3 when not. They work as root (switching to the server's user) or as the user who ran
# `start`.
#
# DIR defaults to ${FLEETSTREAM_SERVERS_DIR:-/tmp/fleetstream-servers-$UID}. Other settings:
#   FLEETSTREAM_SERVERS          which servers `start` starts (default "postgres clickhouse tansu")
#   FLEETSTREAM_SERVERS_TIMEOUT  seconds to wait for a server to answer or stop (default 30)
#   FLEETSTREAM_TANSU            the tansu binary (default ~/.cache/fleetstream/tansu/bin/tansu,
#                                then `tansu` on PATH; scripts/setup.sh builds it)
# As root, PostgreSQL runs as the `postgres` user and ClickHouse as the `clickhouse` user (initdb
# refuses root; ClickHouse run as root leaves root-owned files behind); otherwise everything runs as
# the calling user. The run directory must be reachable by those users (anything under /tmp is).
set -euo pipefail
umask 022

PG_BIN=${FLEETSTREAM_PG_BIN:-/usr/lib/postgresql/15/bin}
TIMEOUT=${FLEETSTREAM_SERVERS_TIMEOUT:-30}
MARKER=.fleetstream-servers

log() { printf '==> %s\n' "$*" >&2; }
die() {
  printf 'servers.sh: error: %s\n' "$*" >&2
  exit 1
}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
  exit "${1:-2}"
}

# --- helpers -----------------------------------------------------------------------------------

resolve_dir() {
  local d=${1:-${FLEETSTREAM_SERVERS_DIR:-/tmp/fleetstream-servers-$(id -u)}}
  d=$(realpath -m -- "$d")
  # The path ends up unquoted in URLs (sqlite://...), XML and generated wrappers: keep it plain.
  [[ $d =~ ^/[A-Za-z0-9._/+-]+$ ]] || die "run directory '$d' must be a plain absolute path ([A-Za-z0-9._/+-])"
  [[ $d != / ]] || die "refusing to use / as the run directory"
  printf '%s\n' "$d"
}

# The user a server runs as: a dedicated system user when we are root, else ourselves.
server_user() {
  if [[ $(id -u) -eq 0 ]]; then
    id -u "$1" >/dev/null 2>&1 || die "user '$1' does not exist (is the $2 package installed?)"
    printf '%s\n' "$1"
  else
    id -un
  fi
}

# runas_prefix USER: sets RUNAS to the command prefix that runs a command as USER: nothing when we
# are USER, runuser when we are root; dies otherwise.
runas_prefix() {
  if [[ $1 == "$(id -un)" ]]; then
    RUNAS=()
  elif [[ $(id -u) -eq 0 ]]; then
    RUNAS=(runuser -u "$1" --)
  else
    die "this server runs as user '$1': call this as '$1' or as root"
  fi
}

# as_user USER CMD...: run CMD as USER.
as_user() {
  local RUNAS
  runas_prefix "$1"
  shift
  "${RUNAS[@]}" "$@"
}

# pid_running PID PATTERN: PID is a live (not zombie) process whose command line contains PATTERN.
# (Builtins only: it runs in every wait loop.)
pid_running() {
  local pid=$1 pattern=$2 stat args=()
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  { read -r stat <"/proc/$pid/stat" && mapfile -d '' args <"/proc/$pid/cmdline"; } 2>/dev/null || return 1
  stat=${stat##*) }
  [[ ${stat:0:1} != [ZX] ]] || return 1
  [[ "${args[*]}" == *"$pattern"* ]]
}

read_pid() { if [[ -s $1 ]]; then head -n1 "$1" 2>/dev/null | tr -dc '0-9'; fi; }

# stop_pid PID PATTERN NAME [GRACE]: SIGTERM, wait up to GRACE seconds (default TIMEOUT), SIGKILL.
stop_pid() {
  local pid=$1 pattern=$2 name=$3 grace=${4:-$TIMEOUT} end
  pid_running "$pid" "$pattern" || return 0
  if ! kill -TERM "$pid" 2>/dev/null && pid_running "$pid" "$pattern"; then
    die "cannot signal $name (pid $pid, user $(stat -c %U "/proc/$pid")): run this as that user or root"
  fi
  end=$((SECONDS + grace))
  while ((SECONDS < end)); do
    pid_running "$pid" "$pattern" || return 0
    sleep 0.1
  done
  log "$name (pid $pid) still running ${grace}s after SIGTERM; killing it"
  kill -KILL "$pid" 2>/dev/null || true
  end=$((SECONDS + 5))
  while ((SECONDS < end)); do
    pid_running "$pid" "$pattern" || return 0
    sleep 0.1
  done
  die "$name (pid $pid) does not die"
}

# close_fds: in the subshell that launches a server, close every descriptor but 0-2, so that the
# server does not keep a caller's pipe open (a caller reading it to the end would hang).
close_fds() {
  local fd
  for fd in /proc/"$BASHPID"/fd/*; do
    fd=${fd##*/}
    ((fd > 2 && fd != 255)) || continue
    exec {fd}>&- || true
  done
}

tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# fail_start NAME REASON LOG...: the server did not come up; show the tail of its logs.
fail_start() {
  local name=$1 reason=$2 f
  shift 2
  {
    printf 'servers.sh: error: %s did not come up: %s\n' "$name" "$reason"
    for f in "$@"; do
      [[ -s $f ]] || continue
      printf -- '--- last lines of %s ---\n' "$f"
      tail -n 30 "$f"
    done
  } >&2
  exit 1
}

# free_ports N: N distinct free loopback TCP ports, below the kernel's ephemeral range so that
# nothing binding port 0 (or an outgoing connection) takes one while a server is stopped by a test.
free_ports() {
  local n=$1 lo hi
  read -r lo hi </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || { lo=32768 hi=60999; }
  if command -v python3 >/dev/null 2>&1; then
    python3 - "$n" "$lo" "$hi" <<'EOF'
import random, socket, sys
n, lo, hi = (int(a) for a in sys.argv[1:4])
# prefer ports below the ephemeral range; fall back to above it
ranges = [(10000, lo - 1)] if lo > 11000 else []
ranges.append((hi + 1, 65535) if hi < 64000 else (1024, 65535))
held, ports = [], []
for first, last in ranges:
    for _ in range(2000):
        if len(ports) == n:
            break
        port = random.randint(first, last)
        if port in ports:
            continue
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", port))  # no SO_REUSEADDR: also fails on TIME_WAIT leftovers
            s.listen(1)
        except OSError:
            s.close()
            continue
        held.append(s)
        ports.append(port)
if len(ports) < n:
    sys.exit("no free loopback ports found")
print(" ".join(map(str, ports)))
EOF
  else
    local ports=() port used
    used=$(ss -Htan 2>/dev/null | awk '{print $4}' | sed 's/.*://' | sort -u)
    while ((${#ports[@]} < n)); do
      port=$((10000 + RANDOM % (lo > 11000 ? lo - 10000 : 20000)))
      grep -qx "$port" <<<"$used" && continue
      [[ " ${ports[*]} " == *" $port "* ]] && continue
      tcp_open "$port" && continue
      ports+=("$port")
    done
    echo "${ports[*]}"
  fi
}

load_state() {
  DIR=$1
  [[ -f $DIR/state ]] || die "no servers were started in $DIR (no $DIR/state); run: $0 start $DIR"
  # shellcheck source=/dev/null
  . "$DIR/state"
}

# --- PostgreSQL --------------------------------------------------------------------------------

pg_ctl_() { (close_fds && cd "$DIR" && as_user "$PG_USER" "$PG_BIN/pg_ctl" -D "$DIR/pg/data" "$@"); }

pg_pid() { read_pid "$DIR/pg/data/postmaster.pid"; }

pg_running() { [[ -d $DIR/pg/data ]] && pid_running "$(pg_pid)" "$DIR/pg/data"; }

pg_answers() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 2 >/dev/null 2>&1; }

pg_start() {
  if pg_running && pg_answers; then return 0; fi
  local end logs=("$DIR/pg/pg_ctl.log" "$DIR/pg/postgres.log")
  # pg_ctl -w waits until the server accepts connections; the postmaster gets its own session.
  pg_ctl_ -l "$DIR/pg/postgres.log" -w -t "$TIMEOUT" start >>"$DIR/pg/pg_ctl.log" 2>&1 </dev/null ||
    fail_start "PostgreSQL (port $PG_PORT)" "pg_ctl start failed" "${logs[@]}"
  end=$((SECONDS + TIMEOUT))
  while ((SECONDS < end)); do
    pg_answers && return 0
    sleep 0.1
  done
  fail_start "PostgreSQL (port $PG_PORT)" "pg_isready still fails after ${TIMEOUT}s" "${logs[@]}"
}

pg_stop() {
  pg_running || return 0
  pg_ctl_ -m fast -w -t "$TIMEOUT" stop >>"$DIR/pg/pg_ctl.log" 2>&1 </dev/null ||
    pg_ctl_ -m immediate -w -t "$TIMEOUT" stop >>"$DIR/pg/pg_ctl.log" 2>&1 </dev/null ||
    stop_pid "$(pg_pid)" "$DIR/pg/data" PostgreSQL
}

pg_init() {
  mkdir -p "$DIR/pg"
  chown "$PG_USER" "$DIR/pg"
  as_user "$PG_USER" test -w "$DIR/pg" ||
    die "user $PG_USER cannot write $DIR/pg: choose a run directory it can reach (e.g. under /tmp)"
  (cd "$DIR" && as_user "$PG_USER" "$PG_BIN/initdb" -D "$DIR/pg/data" -U postgres -A trust \
    --no-sync -E UTF8 --locale=C.UTF-8) >"$DIR/pg/initdb.log" 2>&1 </dev/null ||
    fail_start "PostgreSQL" "initdb failed" "$DIR/pg/initdb.log"
  # Settings live in the config (not pg_ctl -o) so that any later start gets the same port.
  as_user "$PG_USER" tee -a "$DIR/pg/data/postgresql.conf" >/dev/null <<EOF

# fleetstream test cluster (scripts/servers.sh)
port = $PG_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DIR/pg'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
EOF
}

# --- ClickHouse --------------------------------------------------------------------------------

ch_pid() { read_pid "$DIR/ch/clickhouse.pid"; }

ch_running() { pid_running "$(ch_pid)" "$DIR/ch/config.xml"; }

ch_answers() { [[ $(curl -fsS -m 2 "http://127.0.0.1:$CH_HTTP_PORT/ping" 2>/dev/null) == Ok.* ]]; }

ch_start() {
  if ch_running && ch_answers; then return 0; fi
  local end reason="/ping does not answer after ${TIMEOUT}s" what="ClickHouse (http port $CH_HTTP_PORT)"
  local logs=("$DIR"/ch/log/{launch,stderr,stdout,clickhouse-server.err,clickhouse-server}.log)
  ch_stop
  rm -f "$DIR/ch/clickhouse.pid"
  # --daemon: it forks, detaches, writes its own pid file and sends its stdout/stderr to
  # log/stdout.log and log/stderr.log (which therefore must not be created here as another user).
  (close_fds && cd "$DIR/ch" && as_user "$CH_USER" clickhouse-server --config-file="$DIR/ch/config.xml" \
    --pid-file="$DIR/ch/clickhouse.pid" --daemon) >>"$DIR/ch/log/launch.log" 2>&1 </dev/null ||
    fail_start "$what" "clickhouse-server --daemon failed" "${logs[@]}"
  end=$((SECONDS + TIMEOUT))
  while ((SECONDS < end)); do
    ch_answers && return 0
    if [[ -s $DIR/ch/clickhouse.pid ]]; then
      ch_running || { reason="the server exited" && break; }
    elif ((SECONDS > end - TIMEOUT + 3)) && ! pgrep -f -- "--config-file=$DIR/ch/config.xml" >/dev/null; then
      reason="the server exited" && break
    fi
    sleep 0.1
  done
  fail_start "$what" "$reason" "${logs[@]}"
}

# ClickHouse closes its ports at once on SIGTERM, but a running query can hold its exit back for
# 11-15 s (even with shutdown_wait_unfinished=1): give it 10 s, then SIGKILL (inserted parts are
# on disk already; a half-written one is dropped at the next start).
ch_stop() { stop_pid "$(ch_pid)" "$DIR/ch/config.xml" ClickHouse $((TIMEOUT < 10 ? TIMEOUT : 10)); }

ch_init() {
  mkdir -p "$DIR/ch/data" "$DIR/ch/tmp" "$DIR/ch/user_files" "$DIR/ch/format_schemas" "$DIR/ch/log"
  cat >"$DIR/ch/config.xml" <<EOF
<?xml version="1.0"?>
<!-- private ClickHouse for the fleetstream tests (scripts/servers.sh) -->
<yandex>
    <logger>
        <level>information</level>
        <log>$DIR/ch/log/clickhouse-server.log</log>
        <errorlog>$DIR/ch/log/clickhouse-server.err.log</errorlog>
        <size>100M</size>
        <count>2</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>$CH_HTTP_PORT</http_port>
    <tcp_port>$CH_TCP_PORT</tcp_port>
    <!-- no interserver_http_port: no replication, so no third port to collide -->
    <max_connections>1024</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mark_cache_size>268435456</mark_cache_size>
    <path>$DIR/ch/data/</path>
    <tmp_path>$DIR/ch/tmp/</tmp_path>
    <user_files_path>$DIR/ch/user_files/</user_files_path>
    <format_schema_path>$DIR/ch/format_schemas/</format_schema_path>
    <users_config>$DIR/ch/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
    <shutdown_wait_unfinished>1</shutdown_wait_unfinished>
    <max_session_timeout>3600</max_session_timeout>
    <default_session_timeout>60</default_session_timeout>
    <!-- the tests read system.query_log to see what ClickHouse ran for a SQL pushdown -->
    <query_log>
        <database>system</database>
        <table>query_log</table>
        <flush_interval_milliseconds>1000</flush_interval_milliseconds>
    </query_log>
</yandex>
EOF
  cat >"$DIR/ch/users.xml" <<'EOF'
<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <use_uncompressed_cache>0</use_uncompressed_cache>
            <load_balancing>random</load_balancing>
            <log_queries>1</log_queries>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>::1</ip>
                <ip>127.0.0.1</ip>
                <ip>::ffff:127.0.0.1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
EOF
  chown -R "$CH_USER" "$DIR/ch"
  as_user "$CH_USER" test -w "$DIR/ch/data" ||
    die "user $CH_USER cannot write $DIR/ch: choose a run directory it can reach (e.g. under /tmp)"
}

# --- tansu -------------------------------------------------------------------------------------

tansu_bin() {
  local b=${FLEETSTREAM_TANSU:-${XDG_CACHE_HOME:-$HOME/.cache}/fleetstream/tansu/bin/tansu}
  if [[ -x $b ]]; then
    printf '%s\n' "$b"
  elif b=$(command -v tansu 2>/dev/null); then
    printf '%s\n' "$b"
  else
    die "tansu not found (looked at ${FLEETSTREAM_TANSU:-~/.cache/fleetstream/tansu/bin/tansu} and PATH); run scripts/setup.sh"
  fi
}

tansu_pid() { read_pid "$DIR/tansu/tansu.pid"; }

tansu_running() { pid_running "$(tansu_pid)" "sqlite://$DIR/tansu/"; }

tansu_start() {
  if tansu_running && tcp_open "$KAFKA_PORT"; then return 0; fi
  tansu_stop
  rm -f "$DIR/tansu/tansu.pid"
  # tansu 0.6 resolves a sqlite:// path against its working directory even when it starts with
  # a slash, so it runs from / with the absolute path. Settings the broker would also take from
  # the environment are cleared. One exec chain (no shell left waiting, none holding our stdout,
  # which may be a pipe that someone reads to the end): the sh writes its own pid, then execs.
  # It runs as the user who ran `start` (as root: through runuser, which stays as its parent).
  local RUNAS
  runas_prefix "$TANSU_USER"
  # shellcheck disable=SC2016
  (close_fds && cd / && exec setsid "${RUNAS[@]}" \
    env -u SCHEMA_REGISTRY -u OTEL_EXPORTER_OTLP_ENDPOINT -u DATA_LAKE \
    TANSU="$TANSU" PIDFILE="$DIR/tansu/tansu.pid" \
    sh -c 'echo $$ >"$PIDFILE"; exec "$TANSU" "$@"' tansu broker --cluster-id fleetstream \
    --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --storage-engine "sqlite://$DIR/tansu/tansu.db") >>"$DIR/tansu/tansu.log" 2>&1 </dev/null &
  local end reason="port $KAFKA_PORT does not accept connections after ${TIMEOUT}s"
  end=$((SECONDS + TIMEOUT))
  while ((SECONDS < end)); do
    if [[ -s $DIR/tansu/tansu.pid ]]; then
      tcp_open "$KAFKA_PORT" && tansu_running && { tansu_index; return 0; }
      tansu_running || { reason="the broker exited" && break; }
    fi
    sleep 0.1
  done
  fail_start "tansu (port $KAFKA_PORT)" "$reason" "$DIR/tansu/tansu.log"
}

# tansu 0.6 (sqlite) finds each fetched record's headers by scanning its whole header table, so
# every record stored with headers slows every later fetch (Quix Streams' changelogs carry two
# per record: reads fall to a few thousand records/s, then time out). An index on the columns of
# that lookup removes the scan. Best effort: a broker without it works, only slower.
tansu_index() {
  python3 - "$DIR/tansu/tansu.db" <<'PY' || log "tansu: the header index could not be made (reads of records with headers will be slow)"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=10)
if db.execute("select 1 from sqlite_master where type = 'table' and name = 'header'").fetchone():
    db.execute("create index if not exists header_topition_offset on header (topition, offset_id)")
    db.commit()
PY
}

tansu_stop() { stop_pid "$(tansu_pid)" "sqlite://$DIR/tansu/" tansu; }

tansu_init() { mkdir -p "$DIR/tansu"; }

# --- commands ----------------------------------------------------------------------------------

server_status() {
  local name=$1 up
  case $name in
    postgres) pg_running && pg_answers && up="127.0.0.1:$PG_PORT" ;;
    clickhouse) ch_running && ch_answers && up="http://127.0.0.1:$CH_HTTP_PORT" ;;
    tansu) tansu_running && tcp_open "$KAFKA_PORT" && up="127.0.0.1:$KAFKA_PORT" ;;
  esac
  if [[ -n ${up:-} ]]; then
    echo "$name: running ($up)"
  else
    echo "$name: stopped"
    return 3
  fi
}

cmd_ctl() {
  local server=$1 action=$2
  local dir
  dir=$(resolve_dir "${3:-}")
  load_state "$dir"
  [[ " $SERVERS " == *" $server "* ]] || die "$server was not started in $DIR"
  local p RUNAS
  case $server in
    postgres) p=pg && runas_prefix "$PG_USER" ;;
    clickhouse) p=ch && runas_prefix "$CH_USER" ;;
    tansu) p=tansu && runas_prefix "$TANSU_USER" ;;
    *) die "unknown server '$server' (postgres, clickhouse or tansu)" ;;
  esac
  case $action in
    start) "${p}_start" ;;
    stop) "${p}_stop" ;;
    restart) "${p}_stop" && "${p}_start" ;;
    status) server_status "$server" ;;
    *) die "unknown action '$action' (start, stop, restart or status)" ;;
  esac
}

# stop_all DIR: loads DIR/state into this shell's globals (call it in a subshell where that matters).
stop_all() {
  DIR=$1
  [[ -f $DIR/state ]] || return 0
  # shellcheck source=/dev/null
  . "$DIR/state"
  local RUNAS # (dies unless we are root or the servers' user)
  [[ -z $PG_USER ]] || runas_prefix "$PG_USER"
  [[ -z $CH_USER ]] || runas_prefix "$CH_USER"
  [[ -z ${TANSU_USER:-} ]] || runas_prefix "$TANSU_USER"
  [[ " $SERVERS " != *" tansu "* ]] || tansu_stop
  [[ " $SERVERS " != *" clickhouse "* ]] || ch_stop
  [[ " $SERVERS " != *" postgres "* ]] || pg_stop
}

cmd_stop() {
  local dir was_up
  dir=$(resolve_dir "${1:-}")
  [[ -f $dir/state ]] || return 0
  was_up=$(
    load_state "$dir"
    for s in $SERVERS; do server_status "$s" || true; done | grep running || true
  )
  stop_all "$dir"
  [[ -z $was_up ]] || log "stopped the servers in $dir"
}

write_env() {
  {
    printf 'export FLEETSTREAM_TEST_SERVERS_DIR=%s\n' "$DIR"
    if [[ " $SERVERS " == *" tansu "* ]]; then
      printf 'export FLEETSTREAM_TEST_KAFKA=127.0.0.1:%s\n' "$KAFKA_PORT"
      printf 'export FLEETSTREAM_TEST_TANSU_CTL=%s\n' "$DIR/tansu-ctl"
    fi
    if [[ " $SERVERS " == *" postgres "* ]]; then
      printf 'export FLEETSTREAM_TEST_POSTGRES=postgres://postgres@127.0.0.1:%s/postgres\n' "$PG_PORT"
      printf 'export FLEETSTREAM_TEST_POSTGRES_CTL=%s\n' "$DIR/pg-ctl"
    fi
    if [[ " $SERVERS " == *" clickhouse "* ]]; then
      printf 'export FLEETSTREAM_TEST_CLICKHOUSE=http://127.0.0.1:%s\n' "$CH_HTTP_PORT"
      printf 'export FLEETSTREAM_TEST_CLICKHOUSE_TCP=127.0.0.1:%s\n' "$CH_TCP_PORT"
      printf 'export FLEETSTREAM_TEST_CLICKHOUSE_CTL=%s\n' "$DIR/ch-ctl"
    fi
  } >"$DIR/env"
}

write_wrapper() {
  local file=$1 server=$2
  cat >"$file" <<EOF
#!/usr/bin/env bash
# $server in $DIR: start | stop | restart | status (generated by scripts/servers.sh)
exec bash $DIR/servers.sh ctl $server "\${1:-status}" $DIR
EOF
  chmod 755 "$file"
}

cmd_start() {
  local dir s started
  started=$(date +%s%N)
  dir=$(resolve_dir "${1:-}")
  SERVERS=$(echo "${FLEETSTREAM_SERVERS:-postgres clickhouse tansu}" | tr ',' ' ' | xargs)
  for s in $SERVERS; do
    case $s in postgres | clickhouse | tansu) ;; *) die "FLEETSTREAM_SERVERS: unknown server '$s'" ;; esac
  done
  [[ -x $PG_BIN/pg_ctl || " $SERVERS " != *" postgres "* ]] || die "$PG_BIN/pg_ctl not found; run scripts/setup.sh"
  if [[ " $SERVERS " == *" clickhouse "* ]]; then
    command -v clickhouse-server >/dev/null || die "clickhouse-server not found; run scripts/setup.sh"
    command -v curl >/dev/null || die "curl not found; run scripts/setup.sh"
  fi
  if [[ " $SERVERS " == *" tansu "* ]]; then TANSU=$(tansu_bin); else TANSU=""; fi

  # Start clean: stop what an earlier run left, then wipe its directory (only ever one of ours).
  if [[ -e $dir ]]; then
    if [[ -e $dir/$MARKER ]]; then
      (stop_all "$dir") # a subshell: it loads the old run's state
    elif [[ -n $(ls -A "$dir" 2>/dev/null) ]]; then
      die "$dir exists and is not a fleetstream servers directory (no $MARKER); not wiping it"
    fi
    rm -rf "$dir"
  fi
  mkdir -p "$dir"
  chmod 755 "$dir"
  touch "$dir/$MARKER"
  DIR=$dir
  cp "${BASH_SOURCE[0]}" "$DIR/servers.sh"

  PG_USER="" CH_USER="" TANSU_USER=$(id -un)
  [[ " $SERVERS " != *" postgres "* ]] || PG_USER=$(server_user postgres postgresql)
  [[ " $SERVERS " != *" clickhouse "* ]] || CH_USER=$(server_user clickhouse clickhouse-server)
  local ports
  ports=$(free_ports 4)
  read -r PG_PORT CH_HTTP_PORT CH_TCP_PORT KAFKA_PORT <<<"$ports"
  local v
  for v in SERVERS PG_USER CH_USER TANSU_USER PG_PORT CH_HTTP_PORT CH_TCP_PORT KAFKA_PORT TANSU; do
    printf '%s=%q\n' "$v" "${!v}"
  done >"$DIR/state"

  # A failed start leaves nothing running behind.
  trap 'stop_all "$DIR" >/dev/null 2>&1 || true' EXIT
  if [[ " $SERVERS " == *" postgres "* ]]; then
    pg_init
    pg_start
    write_wrapper "$DIR/pg-ctl" postgres
    log "PostgreSQL ready on 127.0.0.1:$PG_PORT (as $PG_USER)"
  fi
  if [[ " $SERVERS " == *" clickhouse "* ]]; then
    ch_init
    ch_start
    write_wrapper "$DIR/ch-ctl" clickhouse
    log "ClickHouse ready on http://127.0.0.1:$CH_HTTP_PORT, tcp $CH_TCP_PORT (as $CH_USER)"
  fi
  if [[ " $SERVERS " == *" tansu "* ]]; then
    tansu_init
    tansu_start
    write_wrapper "$DIR/tansu-ctl" tansu
    log "tansu ready on 127.0.0.1:$KAFKA_PORT"
  fi
  trap - EXIT

  write_env
  log "all up in $((($(date +%s%N) - started) / 1000000))ms; environment in $DIR/env, stop with: $0 stop $DIR"
  cat "$DIR/env"
}

main() {
  local cmd=${1:-}
  shift || true
  case $cmd in
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    status)
      local d s rc=0
      d=$(resolve_dir "${1:-}")
      load_state "$d"
      for s in $SERVERS; do server_status "$s" || rc=3; done
      return "$rc"
      ;;
    env)
      local d
      d=$(resolve_dir "${1:-}")
      [[ -f $d/env ]] || die "no $d/env; run: $0 start $d"
      cat "$d/env"
      ;;
    ctl)
      (($# >= 2)) || usage
      cmd_ctl "$@"
      ;;
    -h | --help | help) usage 0 ;;
    *) usage >&2 ;;
  esac
}

main "$@"
