"""TLS for coffre's listeners: one server context builder, shared by every listener.

The policy follows the French national cybersecurity agency's guide, ANSSI "Recommandations de
sécurité relatives à TLS" (SDE-NT-35, version 1.2, 2020), referred to below as "the guide":

- protocol versions (guide §2.1): TLS 1.3 and TLS 1.2 only; SSL 3, TLS 1.0 and 1.1 are refused;
- cipher suites (guide §2.2 and annex A.1 "suites recommandées"): forward secrecy through ECDHE
  only (no static RSA key exchange, no finite-field DHE in TLS 1.2), AEAD only (AES-GCM and
  ChaCha20-Poly1305, both listed as recommended), hence no CBC and no SHA-1 MAC;
- key exchange groups (guide §2.2, elliptic curves): X25519, secp256r1, secp384r1;
- extensions and other settings (guide §2.3 and §2.4): no compression (CRIME), no
  renegotiation, the server's suite order wins.

TLS 1.3 suites cannot be chosen from Python's ``ssl`` module; OpenSSL's defaults
(TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256, TLS_AES_128_GCM_SHA256) are exactly the
guide's recommended TLS 1.3 suites, so nothing is lost (docs/tls.md).

A future listener (the admin API) calls :func:`server_context` with its own pair of paths.
"""

from __future__ import annotations

import ctypes
import logging
import os
import ssl
import stat
import sys

log = logging.getLogger("coffre.tls")

# TLS 1.2 suites, best first (the server's order wins). The guide prefers AES-256 and accepts
# AES-128; ChaCha20-Poly1305 is in its recommended list too, and is what clients without AES
# instructions (many ARM boards) run fast. ECDSA before RSA: `coffre dev-cert` makes ECDSA keys,
# and only the suites matching the certificate's key type can be negotiated anyway.
TLS12_CIPHERS = ":".join([
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-RSA-CHACHA20-POLY1305",
])

# Key exchange groups, in OpenSSL's names. X25519 first: fastest, and constant-time by design.
GROUPS = "X25519:P-256:P-384"

_SSL_CTRL_SET_GROUPS_LIST = 92  # OpenSSL's SSL_CTX_set1_groups_list() is this SSL_CTX_ctrl()


class TLSConfigError(ValueError):
    """The TLS certificate or key cannot be used; the message says which file and why."""


def check_key_file(path: str) -> None:
    """Refuse a private key that group or others may access, as ssh refuses such a key.

    The path is followed through symlinks (certbot's ``live/`` links): the mode that matters is
    the file's.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise TLSConfigError(f"TLS key file {path} does not exist") from None
    if not stat.S_ISREG(st.st_mode):
        raise TLSConfigError(f"TLS key file {path} is not a regular file")
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise TLSConfigError(f"TLS key file {path} must not be accessible by group or others (chmod 600)")


def server_context(cert_path: str, key_path: str) -> ssl.SSLContext:
    """A server-side context holding the certificate chain and key, with the guide's policy."""
    if not os.path.isfile(cert_path):
        raise TLSConfigError(f"TLS certificate file {cert_path} does not exist")
    check_key_file(key_path)
    ctx = hardened_context()

    def no_passphrase() -> str:
        # OpenSSL would otherwise ask for it on the terminal: a server starting unattended hangs.
        raise TLSConfigError(f"TLS key file {key_path} is encrypted; coffre needs it unencrypted (mode 0600)")

    try:
        ctx.load_cert_chain(cert_path, key_path, password=no_passphrase)
    except ssl.SSLError as e:
        raise TLSConfigError(f"cannot use TLS certificate {cert_path} with key {key_path}: {e.reason or e}") from None
    return ctx


def optional_server_context(cert_path: str | None, key_path: str | None,
                            names: tuple[str, str] = ("tls_cert", "tls_key")) -> ssl.SSLContext | None:
    """The context for a listener whose settings (``names``) give both paths, None when neither."""
    if not cert_path and not key_path:
        return None
    if not cert_path or not key_path:
        raise TLSConfigError(f"TLS needs both a certificate and a key ({names[0]} and {names[1]})")
    return server_context(cert_path, key_path)


def hardened_context() -> ssl.SSLContext:
    """The policy alone, without a certificate (split out so it can be inspected by tests)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # Guide §2.1: TLS 1.2 at least. Set explicitly rather than relying on the distribution's
    # OpenSSL security level, which another build may set lower.
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
    # Guide §2.2: TLS 1.2 suites restricted to ECDHE + AEAD (no kRSA, no CBC, no SHA-1 MAC).
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= (
        ssl.OP_NO_COMPRESSION  # the guide: compression leaks secrets through lengths (CRIME)
        | ssl.OP_NO_RENEGOTIATION  # the guide: renegotiation is not needed and has had flaws
        | ssl.OP_CIPHER_SERVER_PREFERENCE  # our order above, not the client's
        | ssl.OP_SINGLE_ECDH_USE  # a fresh ephemeral key per handshake
        # Stateless session tickets are encrypted with one key for the life of the process:
        # stealing it would decrypt every resumed session, defeating forward secrecy. Resumption
        # uses the server-side session cache instead.
        | ssl.OP_NO_TICKET
    )
    _set_groups(ctx, GROUPS)
    return ctx


def _set_groups(ctx: ssl.SSLContext, groups: str) -> None:
    """Restrict the key exchange groups to ``groups``.

    Python before 3.15 only offers ``set_ecdh_curve``, which sets ONE group. The list is set by
    calling OpenSSL on the context's SSL_CTX, found right after the object header of CPython's
    SSLContext, and only once that pointer is proven right (OpenSSL reports the same options as
    Python does). Should that check fail, P-256 alone is used: every TLS client offers it.
    """
    if _set_groups_list(ctx, groups):
        return
    log.debug("key exchange groups: falling back to P-256 only")
    ctx.set_ecdh_curve("prime256v1")


def _set_groups_list(ctx: ssl.SSLContext, groups: str) -> bool:
    if sys.implementation.name != "cpython":
        return False
    try:
        import _ssl

        lib = ctypes.CDLL(_ssl.__file__)  # its symbols include the libssl it was linked with
        get_options = lib.SSL_CTX_get_options
        get_options.restype = ctypes.c_uint64
        get_options.argtypes = [ctypes.c_void_p]
        ctrl = lib.SSL_CTX_ctrl
        ctrl.restype = ctypes.c_long
        ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_char_p]
    except (OSError, AttributeError, ImportError):
        return False
    # The SSL_CTX pointer is the first field after PyObject_HEAD, whose size is object's own
    # (larger in free-threaded builds).
    ssl_ctx = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    if not ssl_ctx:
        return False
    # Proof that this is the real SSL_CTX: OpenSSL reports Python's view of the options, also
    # after one bit is flipped through Python.
    before = int(ctx.options)
    if get_options(ssl_ctx) != before:
        return False
    ctx.options = ssl.Options(before ^ ssl.OP_NO_TICKET)
    matched = get_options(ssl_ctx) == before ^ ssl.OP_NO_TICKET
    ctx.options = ssl.Options(before)
    if not matched or get_options(ssl_ctx) != before:
        return False
    return bool(ctrl(ssl_ctx, _SSL_CTRL_SET_GROUPS_LIST, 0, groups.encode()) == 1)
