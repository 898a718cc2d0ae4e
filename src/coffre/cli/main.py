"""The ``coffre`` command."""

from __future__ import annotations

import argparse
import sys

from coffre import __version__
from coffre.cli import admin, audit, billing, devcert, keyserver, transfer


def _serve(args: argparse.Namespace) -> int:
    from coffre.observability.logs import configure_logging
    from coffre.server import run
    from coffre.settings import load_settings

    if args.worker_channel is not None:
        # A secondary worker started by a primary (docs/workers.md): its settings come from the
        # primary over the channel, so both run with exactly the same ones.
        from coffre.workers import run_secondary

        run_secondary(args.worker_channel)
        return 0
    settings = load_settings(args.config, address=args.address, data_dir=args.data_dir,
                             tls_cert=args.tls_cert, tls_key=args.tls_key,
                             admin_address=args.admin_address, workers=args.workers)
    # JSON or text lines on stderr; the root secret and every signature are scrubbed on all handlers.
    configure_logging(settings.log_level, settings.log_format, secrets=(settings.root_secret_key,))
    run(settings)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coffre", description="Sovereign S3-compatible object storage.")
    parser.add_argument("--version", action="version", version=f"coffre {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the S3 server")
    p.add_argument("--address", help="HOST:PORT to listen on (env COFFRE_ADDRESS, default 127.0.0.1:9000)")
    p.add_argument("--data-dir", help="state directory (env COFFRE_DATA_DIR, default ./coffre-data)")
    p.add_argument("--config", help="TOML settings file (see docs/configuration.md)")
    p.add_argument("--tls-cert", help="PEM certificate chain: serve HTTPS only (env COFFRE_TLS_CERT)")
    p.add_argument("--tls-key", help="PEM private key of --tls-cert, mode 0600 (env COFFRE_TLS_KEY)")
    p.add_argument("--admin-address",
                   help="HOST:PORT of the admin listener: admin API, metrics, health (env COFFRE_ADMIN_ADDRESS, default 127.0.0.1:9001)")
    p.add_argument("--workers", type=int,
                   help="processes serving the S3 API (env COFFRE_WORKERS, default 1; docs/workers.md)")
    # Internal: the file descriptor of a secondary worker's channel to its primary (workers.py).
    p.add_argument("--worker-channel", type=int, help=argparse.SUPPRESS)
    p.set_defaults(func=_serve)
    admin.add_parser(sub)
    audit.add_parser(sub)
    billing.add_parser(sub)
    devcert.add_parser(sub)
    keyserver.add_parser(sub)
    transfer.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except (ValueError, PermissionError, OSError) as e:
        print(f"coffre: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
