#!/usr/bin/env bash
# Copied from the project's shared benchmark tools (shared/bench/peers/ceph.sh); keep in step with it.
# Single-node Ceph (1 mon, 1 mgr, 1 OSD, 1 radosgw) from Debian packages, on
# loopback only, without cephadm/systemd/containers: the manual-deployment
# steps of the Ceph docs, condensed.  Storage: one BlueStore OSD on a sparse
# file (CEPH_STORE=bluestore, default) or MemStore in RAM (CEPH_STORE=memstore).
#
#   bench/peers/ceph.sh install|setup|start|stop|status|pids|s3tests-users
#
# CEPH_S3TESTS=1 at setup adds to [client.rgw.a] the RGW options that Ceph's
# own s3-tests CI sets (lifecycle debug "day" = RGW_LC_DEBUG_INTERVAL s, default
# 1; SSE over plain http; the "testing" KMS backend with keys testkey-1/-2).
# "s3tests-users" creates the main/alt/tenant users the suite needs (the
# tenant user inside tenant "testx") and prints the run.sh credential specs.
#
# S3 endpoint: http://127.0.0.1:$RGW_PORT  access key bench  secret benchsecret
# Deviations from a production install (on purpose, single node):
#   auth = none (no cephx keyrings), replica size 1, crush failure domain = osd,
#   8 PGs per pool, all daemons run as root from $BENCH_ROOT/ceph.
set -euo pipefail
ROOT=${BENCH_ROOT:-/tmp/coffre-perfbase}
C=$ROOT/ceph
CONF=$C/ceph.conf
MON_PORT=18091
RGW_PORT=${RGW_PORT:-18087}
STORE=${CEPH_STORE:-bluestore}
CEPH="ceph -c $CONF --connect-timeout 20"

cmd_install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    ceph-mon ceph-mgr ceph-osd radosgw ceph-common
}

cmd_setup() {
  cmd_stop || true
  rm -rf "$C"; mkdir -p "$C"/{mon/ceph-a,mgr/ceph-x,osd/ceph-0,run,log,rgw}
  FSID=$(cat /proc/sys/kernel/random/uuid)
  cat >"$CONF" <<EOF
[global]
fsid = $FSID
mon_initial_members = a
mon_host = v2:127.0.0.1:$MON_PORT
public_addr = 127.0.0.1
public_network = 127.0.0.0/8
ms_bind_msgr1 = false
ms_bind_port_min = 18240
ms_bind_port_max = 18279
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
mon_max_pg_per_osd = 1000
osd_crush_chooseleaf_type = 0
run_dir = $C/run
log_file = $C/log/\$name.log
admin_socket = $C/run/\$name.asok
mon_data = $C/mon/ceph-\$id
mgr_data = $C/mgr/ceph-\$id
osd_data = $C/osd/ceph-\$id
[osd]
osd_objectstore = $STORE
bluestore_block_path = $C/osd/ceph-\$id/block.file
bluestore_block_create = true
bluestore_block_size = 21474836480
bluestore_fsck_on_mkfs = false
memstore_device_bytes = 12884901888
osd_memory_target = 2147483648
[client.rgw.a]
rgw_frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw_data = $C/rgw
# radosgw defaults ms_mon_client_mode to "secure", which auth=none cannot do
ms_mon_client_mode = crc
EOF
  if [ "${CEPH_S3TESTS:-0}" = 1 ]; then
    # as in ceph/ceph qa (s3tests task overrides); keys are the qa's test keys.
    # Not rgw_crypt_default_encryption_key: it encrypts every object (RGW then
    # answers CopyObject with NotImplemented in 16.2 and every PUT/GET pays AES).
    cat >>"$CONF" <<EOF
rgw_lc_debug_interval = ${RGW_LC_DEBUG_INTERVAL:-1}
rgw_crypt_require_ssl = false
rgw_crypt_s3_kms_backend = testing
rgw_crypt_s3_kms_encryption_keys = testkey-1=YmluCmJvb3N0CmJvb3N0LWJ1aWxkCmNlcGguY29uZgo= testkey-2=aWIKTWFrZWZpbGUKbWFuCm91dApzcmMKVGVzdGluZwo=
EOF
  fi
  monmaptool --create --clobber --fsid "$FSID" --addv a "[v2:127.0.0.1:$MON_PORT]" "$C/monmap" >/dev/null
  ceph-mon -c "$CONF" --mkfs -i a --monmap "$C/monmap"
  echo "ceph configured in $C ($STORE)"
}

start_bg() { local n=$1; shift; nohup "$@" >"$C/log/$n.out" 2>&1 & echo $! >"$C/run/$n.pid"; }

cmd_start() {
  [ -f "$CONF" ] || cmd_setup
  start_bg mon ceph-mon -c "$CONF" -i a -f
  for _ in $(seq 60); do $CEPH -s >/dev/null 2>&1 && break; sleep 1; done
  start_bg mgr ceph-mgr -c "$CONF" -i x -f
  if [ ! -f "$C/osd/ceph-0/fsid" ]; then
    OSD_UUID=$(cat /proc/sys/kernel/random/uuid)
    $CEPH osd new "$OSD_UUID" >/dev/null
    ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$OSD_UUID" >"$C/log/osd-mkfs.out" 2>&1
  fi
  start_bg osd ceph-osd -c "$CONF" -i 0 -f
  for _ in $(seq 90); do $CEPH osd stat 2>/dev/null | grep -q "1 up" && break; sleep 1; done
  start_bg rgw radosgw -c "$CONF" -n client.rgw.a -f
  for _ in $(seq 120); do curl -fsS -o /dev/null "http://127.0.0.1:$RGW_PORT/" 2>/dev/null && break; sleep 1; done
  radosgw-admin -c "$CONF" user info --uid=bench >/dev/null 2>&1 ||
    radosgw-admin -c "$CONF" user create --uid=bench --display-name=bench \
      --access-key=bench --secret-key=benchsecret >/dev/null
  $CEPH -s | sed -n '1,12p'
  echo "rgw on http://127.0.0.1:$RGW_PORT (bench / benchsecret); pids: $(cmd_pids)"
}

cmd_pids() { cat "$C"/run/*.pid 2>/dev/null | tr '\n' ' '; }

cmd_stop() {
  for n in rgw osd mgr mon; do
    f=$C/run/$n.pid; [ -f "$f" ] || continue
    kill "$(cat "$f")" 2>/dev/null || true; rm -f "$f"; sleep 1
  done
}

cmd_status() { $CEPH -s; }

cmd_s3tests_users() {  # prints --main/--alt/--tenant specs for bench/s3tests/run.sh
  local A="radosgw-admin -c $CONF"
  $A user info --uid=s3main >/dev/null 2>&1 || $A user create --uid=s3main --display-name=s3main \
    --email=s3main@example.com --access-key=s3mainkey --secret-key=s3mainsecret >/dev/null
  $A user info --uid=s3alt >/dev/null 2>&1 || $A user create --uid=s3alt --display-name=s3alt \
    --email=s3alt@example.com --access-key=s3altkey --secret-key=s3altsecret >/dev/null
  $A user info --tenant=testx --uid=s3tenant >/dev/null 2>&1 || $A user create --tenant=testx --uid=s3tenant \
    --display-name=s3tenant --email=s3tenant@example.com --access-key=s3tenantkey --secret-key=s3tenantsecret >/dev/null
  echo "--main s3mainkey:s3mainsecret:s3main:s3main:s3main@example.com"
  echo "--alt s3altkey:s3altsecret:s3alt:s3alt:s3alt@example.com"
  echo '--tenant s3tenantkey:s3tenantsecret:testx$s3tenant:s3tenant:s3tenant@example.com --tenant-name testx'
}

case "${1:-}" in
  install) cmd_install ;; setup) cmd_setup ;; start) cmd_start ;; stop) cmd_stop ;;
  status) cmd_status ;; pids) cmd_pids; echo ;; s3tests-users) cmd_s3tests_users ;;
  *) echo "usage: $0 install|setup|start|stop|status|pids|s3tests-users" >&2; exit 1 ;;
esac
