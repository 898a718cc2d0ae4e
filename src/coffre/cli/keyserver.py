"""``coffre keyserver``: the reference "hold your own key" service a tenant runs on its premises.

    coffre keyserver new-token --token-file /etc/acme-keys/token        # a random token, mode 0600
    coffre keyserver create-key --key-file /etc/acme-keys/keys.json acme
    coffre keyserver --key-file /etc/acme-keys/keys.json --token-file /etc/acme-keys/token \\
        --address 0.0.0.0:8443 --tls-cert cert.pem --tls-key key.pem [--client-ca coffre-ca.pem]
    coffre keyserver disable-key --key-file ... acme    # revoke: coffre can no longer open acme's data
    coffre keyserver enable-key --key-file ... acme     # and restore it
    coffre keyserver destroy-key --key-file ... acme    # crypto-erasure, for good

Without a subcommand it serves (docs/hyok-protocol.md). Key state changes are picked up by a
running service at its next request.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
import stat
import sys

DEFAULT_ADDRESS = "127.0.0.1:9400"


def read_token_file(path: str) -> str:
    """The bearer token in ``path`` (one line); the file must be private to its owner."""
    from coffre.crypto.external import check_token

    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        if os.fstat(fd).st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise PermissionError(f"token file {path} must not be accessible by group or others (chmod 600)")
        token = os.read(fd, 4096).decode("ascii", "replace").strip()
    finally:
        os.close(fd)
    try:
        check_token(token)
    except ValueError as e:
        raise ValueError(f"token file {path}: {e}") from None
    return token


def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from coffre.keyserver.app import KeyService, client_verifying
    from coffre.keyserver.keyfile import KeyFile
    from coffre.tlsconfig import optional_server_context

    if not args.key_file or not args.token_file:
        raise ValueError("serving needs --key-file and --token-file")
    logging.basicConfig(level=getattr(logging, args.log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr)
    keys = KeyFile(args.key_file)
    token = read_token_file(args.token_file)
    tls = optional_server_context(args.tls_cert, args.tls_key)
    if args.client_ca:
        if tls is None:
            raise ValueError("--client-ca (mutual TLS) needs --tls-cert and --tls-key")
        client_verifying(tls, args.client_ca)
    host, _, port = args.address.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"

    async def run() -> None:
        # No access log: request lines are harmless here, but the protocol's log lines say enough.
        runner = web.AppRunner(KeyService(keys, token).application(), access_log=None, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, host, int(port), ssl_context=tls, reuse_address=True).start()
        scheme = "https" if tls is not None else "http"
        sys.stdout.write(f"coffre keyserver listening on {scheme}://{args.address} "
                         f"({len(keys.keys())} keys in {keys.path})\n")
        sys.stdout.flush()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(run())
    return 0


def _need_key_file(args: argparse.Namespace) -> str:
    if not args.key_file:
        raise ValueError("--key-file is required")
    return str(args.key_file)


def _create_key(args: argparse.Namespace) -> int:
    from coffre.keyserver.keyfile import create_key

    key = create_key(_need_key_file(args), args.key_id)
    print(f"key {key.key_id} created (enabled)")
    return 0


def _state(state: str) -> object:
    def run(args: argparse.Namespace) -> int:
        from coffre.keyserver.keyfile import set_state

        key = set_state(_need_key_file(args), args.key_id, state)
        print(f"key {key.key_id} {key.state}")
        return 0
    return run


def _list_keys(args: argparse.Namespace) -> int:
    from coffre.keyserver.keyfile import KeyFile

    for key in KeyFile(_need_key_file(args)).keys():
        print(f"{key.key_id}\t{key.state}")
    return 0


def _new_token(args: argparse.Namespace) -> int:
    if not args.token_file:
        raise ValueError("--token-file is required")
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if args.force else os.O_EXCL)
    try:
        fd = os.open(args.token_file, flags | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise ValueError(f"{args.token_file} exists (--force replaces it)") from None
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (secrets.token_urlsafe(32) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    # The token is not printed: it goes from this file to the operator's `--token-file`.
    print(f"a new token is in {args.token_file}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("keyserver", help="run the reference hold-your-own-key service (docs/hyok-protocol.md)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # The file options are accepted before or after the subcommand.
    files = argparse.ArgumentParser(add_help=False)
    files.add_argument("--key-file", default=argparse.SUPPRESS, help="the service's keys (JSON, mode 0600)")
    files.add_argument("--token-file", default=argparse.SUPPRESS, help="the bearer token clients present (0600)")
    p.add_argument("--key-file", help="the service's keys (JSON, mode 0600)")
    p.add_argument("--token-file", help="the bearer token clients present (one line, mode 0600)")
    p.add_argument("--address", default=DEFAULT_ADDRESS, help=f"HOST:PORT to listen on (default {DEFAULT_ADDRESS})")
    p.add_argument("--tls-cert", help="PEM certificate chain: serve HTTPS")
    p.add_argument("--tls-key", help="its PEM private key (mode 0600)")
    p.add_argument("--client-ca", help="require client certificates signed by this CA (mutual TLS)")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    p.set_defaults(func=_serve)
    ks = p.add_subparsers(dest="keyserver_command")
    c = ks.add_parser("create-key", parents=[files], help="create an enabled key")
    c.add_argument("key_id")
    c.set_defaults(func=_create_key)
    for name, state, text in (("disable-key", "disabled", "refuse every use of a key (reversible)"),
                              ("enable-key", "enabled", "allow a disabled key again"),
                              ("destroy-key", "destroyed", "erase a key's material for good")):
        s = ks.add_parser(name, parents=[files], help=text)
        s.add_argument("key_id")
        s.set_defaults(func=_state(state))
    ls = ks.add_parser("list-keys", parents=[files], help="list key ids and states (never material)")
    ls.set_defaults(func=_list_keys)
    t = ks.add_parser("new-token", parents=[files], help="write a new random bearer token to --token-file")
    t.add_argument("--force", action="store_true", help="replace an existing token file")
    t.set_defaults(func=_new_token)
