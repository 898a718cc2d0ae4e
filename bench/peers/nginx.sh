#!/usr/bin/env bash
# Copied from the project's shared benchmark tools (shared/bench/peers/nginx.sh); keep in step with it.
# nginx (Debian nginx-light) serving static files over loopback: the GET upper
# bound for a loopback HTTP object server (sendfile, keep-alive, no access log).
#   bench/peers/nginx.sh install|start|stop|pid|md5 SIZE
# Files: /obj-4KiB, /obj-1MiB, /obj-64MiB (random bytes).
set -euo pipefail
ROOT=${BENCH_ROOT:-/tmp/coffre-perfbase}
N=$ROOT/nginx
PORT=${NGINX_PORT:-18086}

case "${1:-}" in
  install) DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light wrk ;;
  start)
    mkdir -p "$N/www" "$N/tmp"
    for s in 4KiB:4 1MiB:1024 64MiB:65536; do
      f="$N/www/obj-${s%%:*}"
      [ -f "$f" ] || head -c $(( ${s##*:} * 1024 )) /dev/urandom >"$f"
    done
    cat >"$N/nginx.conf" <<CONF
worker_processes auto;          # = 2 here
pid $N/nginx.pid;
error_log $N/error.log warn;
daemon on;
events { worker_connections 1024; }
http {
  sendfile on; tcp_nopush on; tcp_nodelay on;
  keepalive_requests 1000000; keepalive_timeout 120s;
  access_log off;
  default_type application/octet-stream;
  client_body_temp_path $N/tmp; proxy_temp_path $N/tmp;
  fastcgi_temp_path $N/tmp; uwsgi_temp_path $N/tmp; scgi_temp_path $N/tmp;
  server { listen 127.0.0.1:$PORT; root $N/www; }
}
CONF
    ! ss -Htln "sport = :$PORT" | grep -q . || { echo "port $PORT busy" >&2; exit 1; }
    /usr/sbin/nginx -c "$N/nginx.conf" -e "$N/error.log"
    sleep 0.5; echo "nginx on http://127.0.0.1:$PORT pid $(cat "$N/nginx.pid")" ;;
  stop) [ -f "$N/nginx.pid" ] && kill "$(cat "$N/nginx.pid")" 2>/dev/null || true ;;
  pid) cat "$N/nginx.pid" ;;
  md5) md5sum "$N/www/obj-$2" | cut -d' ' -f1 ;;
  *) echo "usage: $0 install|start|stop|pid|md5 SIZE" >&2; exit 1 ;;
esac
