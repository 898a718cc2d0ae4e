#!/usr/bin/env python3
# Copied from the project's shared benchmark tools (shared/bench/limits.py); keep in step with it.
# ruff: noqa: S324, E741  -- md5 is what S3 ETags are; closures run within their loop iteration
"""Per-core CPU cost references for an S3 server: hashing and encryption.

Prints one JSON line: MiB/s on ONE core for md5, sha256 (both computed by S3
servers on every PUT: ETag / SigV4 payload hash), crc32 (zlib) and
AES-256-GCM encrypt/decrypt (``cryptography``; encryption-at-rest cost).
"""
import hashlib
import json
import os
import sys
import time
import zlib

MiB = 1 << 20


def rate(fn, buf, total_mib=1024, reps=3):
    n = total_mib * MiB // len(buf)
    best = 0.0
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(n):
            fn(buf)
        dt = time.perf_counter() - t
        best = max(best, n * len(buf) / MiB / dt)
    return round(best, 1)


def main():
    buf = os.urandom(MiB)
    out = {"tool": "limits", "chunk": "1MiB", "unit": "MiB/s per core (best of 3)"}
    h = hashlib.md5()
    out["md5"] = rate(h.update, buf)
    h = hashlib.sha256()
    out["sha256"] = rate(h.update, buf)
    out["crc32_zlib"] = rate(zlib.crc32, buf, 2048)
    try:  # coffre computes S3's default checksum (CRC64NVME) on every PUT, through awscrt
        from awscrt import checksums as crt
        out["crc64nvme_awscrt"] = rate(crt.crc64nvme, buf, 2048)
        out["crc32c_awscrt"] = rate(crt.crc32c, buf, 2048)
    except ImportError:
        pass
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        key = AESGCM.generate_key(bit_length=256)
        aes = AESGCM(key)
        nonce = os.urandom(12)
        out["aes256gcm_encrypt"] = rate(lambda b: aes.encrypt(nonce, b, None), buf)
        ct = aes.encrypt(nonce, buf, None)
        out["aes256gcm_decrypt"] = rate(lambda b: aes.decrypt(nonce, ct, None), buf)
        import cryptography
        out["cryptography"] = cryptography.__version__
    except ImportError:
        out["aes256gcm_encrypt"] = None
    out["python"] = sys.version.split()[0]
    try:
        out["cpu"] = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
        out["cpu_flags_sha_ni"] = " sha_ni " in open("/proc/cpuinfo").read()
    except OSError:
        pass
    print(json.dumps(out))


if __name__ == "__main__":
    main()
