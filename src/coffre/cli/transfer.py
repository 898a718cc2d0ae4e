"""``coffre cp``, ``coffre sync`` and ``coffre keygen``: copy files to and from any S3 endpoint,
optionally encrypted on the client with a key the server never sees.

Encryption is on when a key is given (``--key-file``, or the file named by ``COFFRE_CSE_KEY_FILE``;
or a passphrase, ``--passphrase-file``) and off with ``--no-encrypt``; the format is docs/client-side-encryption.md
(coffre.crypto.clientside). Files are read and written as streams: an upload encrypts segment by
segment straight into the request body (a multipart upload above 16 MiB, 4 parts at a time), a
download decrypts as it reads and writes to a temporary file renamed into place only once every
segment has authenticated, so a tampered object never leaves a plausible-looking file behind.
Memory stays constant whatever the size of the file.

Endpoint: ``--endpoint-url``, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else http://127.0.0.1:9000.
Credentials: ``--profile`` (~/.aws/credentials), AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, then
the AWS_PROFILE or default profile. A progress bar is drawn on stderr when it is a terminal.
Exit status: 0 done, 1 the transfer failed (an S3 error, a wrong key, an object that does not
authenticate), 2 the command could not run.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import secrets
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import IO

from coffre.cli.s3client import ConnectionFailed, S3Client, S3Error, resolve_credentials, resolve_endpoint
from coffre.crypto import clientside as cse

PART_SIZE = 16 * 1024 * 1024
CONCURRENCY = 4
MAX_PARTS = 10_000
PLAIN_CHUNK = 64 * 1024
SEGMENT_SIZE = cse.DEFAULT_SEGMENT_SIZE

# The header's fields repeated as user metadata, so a HEAD tells the layout and the plaintext size
# of an object; the header in the body stays authoritative (it is authenticated, these are not).
META_CSE = "x-amz-meta-coffre-cse"
META_SIZE = "x-amz-meta-coffre-cse-plaintext-size"
META_SEGMENT = "x-amz-meta-coffre-cse-segment-size"
META_KEY_ID = "x-amz-meta-coffre-cse-key-id"  # the header's key field: key id, or scrypt salt
META_ALGORITHM = "x-amz-meta-coffre-cse-algorithm"
# What sync compares: "hmac-sha256:<hex>" (keyed by the user's key) or "sha256:<hex>" unencrypted.
META_DIGEST = "x-amz-meta-coffre-digest"


class TransferError(Exception):
    """A transfer could not be done as asked (exit 1)."""


@dataclass(frozen=True)
class S3Url:
    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse_s3_url(text: str) -> S3Url | None:
    if not text.startswith("s3://"):
        return None
    bucket, _, key = text[5:].partition("/")
    if not bucket:
        raise ValueError(f"{text!r} names no bucket")
    return S3Url(bucket, key)


def parse_range(text: str) -> tuple[int | None, int | None]:
    """``a-b`` (inclusive), ``a-`` (to the end) or ``-n`` (the last n bytes), as in HTTP."""
    first, sep, last = text.partition("-")
    try:
        if not sep or (not first and not last):
            raise ValueError
        a = int(first) if first else None
        b = int(last) if last else None
    except ValueError:
        raise ValueError(f"--range {text!r} is not a-b, a- or -n (bytes, inclusive)") from None
    if (a is not None and a < 0) or (b is not None and b < 0) or (a is not None and b is not None and b < a) \
            or (a is None and b == 0):
        raise ValueError(f"--range {text!r} is empty or reversed")
    return a, b


def resolve_range(rng: tuple[int | None, int | None], size: int) -> tuple[int, int]:
    a, b = rng
    if a is None:  # suffix: the last b bytes
        assert b is not None
        first, last = max(0, size - b), size - 1
    else:
        first, last = a, size - 1 if b is None else min(b, size - 1)
    if size == 0 or first >= size:
        raise TransferError(f"the range is outside the object ({size} bytes)")
    return first, last


# -- progress --
def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


class Progress:
    """A one-line bar on a terminal, redrawn at most ten times a second; nothing when ``stream`` is None."""

    WIDTH = 24

    def __init__(self, label: str, total: int, stream: IO[str] | None) -> None:
        self.label, self.total, self.stream = label, total, stream
        self.done = 0
        self._lock = threading.Lock()
        self._start = self._drawn = time.monotonic()
        if stream is not None:
            self._draw()

    def add(self, n: int) -> None:
        if self.stream is None:
            return
        with self._lock:
            self.done += n
            now = time.monotonic()
            if now - self._drawn >= 0.1:
                self._drawn = now
                self._draw()

    def _draw(self) -> None:
        assert self.stream is not None
        done = min(self.done, self.total)
        frac = done / self.total if self.total else 1.0
        filled = int(frac * self.WIDTH)
        rate = done / max(time.monotonic() - self._start, 1e-6)
        label = self.label if len(self.label) <= 40 else "…" + self.label[-39:]
        line = (f"{label}  [{'#' * filled}{'.' * (self.WIDTH - filled)}] {frac * 100:3.0f}%  "
                f"{_human(done)} / {_human(self.total)}  {_human(rate)}/s")
        self.stream.write("\r\x1b[K" + line)
        self.stream.flush()

    def close(self) -> None:
        if self.stream is not None:
            with self._lock:
                self.done = self.total
                self._draw()
                self.stream.write("\r\x1b[K")
                self.stream.flush()


# -- the transfers --
def part_size_for(size: int) -> int:
    """16 MiB, or more for a file that would need more than 10,000 parts; a multiple of the
    segment size, so that every part but the first is whole segments."""
    need = -(-size // MAX_PARTS)
    return max(PART_SIZE, -(-need // SEGMENT_SIZE) * SEGMENT_SIZE)


class FileChanged(TransferError):
    def __init__(self, path: str) -> None:
        super().__init__(f"{path} changed while it was being read; run the command again")


class Transfers:
    def __init__(self, client: S3Client, key: cse.KeySource | None, *, allow_plaintext: bool = False,
                 raw: bool = False, progress: bool = False, quiet: bool = False, dry_run: bool = False) -> None:
        self.client, self.key = client, key
        self.allow_plaintext, self.raw = allow_plaintext, raw
        self.progress_stream: IO[str] | None = sys.stderr if progress else None
        self.quiet, self.dry_run = quiet, dry_run

    def _say(self, line: str) -> None:
        if not self.quiet:
            print(line, flush=True)

    # -- digests (what sync compares) --
    def _digest_label(self) -> str:
        return "hmac-sha256:" if self.key else "sha256:"

    @staticmethod
    def local_digest(path: str, key: cse.UserKey | None) -> str:
        """The digest ``sync`` compares: keyed by ``key`` (the one an object was or will be
        encrypted with), or a plain SHA-256 without encryption."""
        d: hmac.HMAC | hashlib._Hash = key.digester() if key is not None else hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1024 * 1024):
                d.update(chunk)
        return ("hmac-sha256:" if key is not None else "sha256:") + d.hexdigest()

    def _key_of(self, head: dict[str, str]) -> cse.UserKey | None:
        """Our key as it opens the object described by ``head`` (its metadata): None when it
        does not (another key, or metadata that does not say)."""
        assert self.key is not None
        try:
            return self.key.reading_key(int(head.get(META_ALGORITHM, str(cse.ALG_AES256GCM_KEYFILE))),
                                        bytes.fromhex(head.get(META_KEY_ID, "")))
        except (cse.WrongKey, ValueError):
            return None

    # -- upload --
    def upload(self, path: str, dest: S3Url) -> None:
        if self.dry_run:
            self._say(f"(dry run) upload: {path} to {dest}")
            return
        fd = os.open(path, os.O_RDONLY)
        try:
            if self.key is None and not self.raw:
                self._refuse_plaintext_over_ciphertext(dest)
            before = os.fstat(fd)
            size = before.st_size
            # The digest is read first: the metadata goes with the first request, before the data.
            writer = self.key.writing_key() if self.key is not None else None
            digest = self.local_digest(path, writer)
            headers = {"content-type": "application/octet-stream", META_DIGEST: digest}
            enc: cse.Encryptor | None = None
            if writer is not None:
                enc = cse.new_object(writer, size, SEGMENT_SIZE)
                headers.update({META_CSE: str(cse.VERSION), META_SIZE: str(size),
                                META_SEGMENT: str(SEGMENT_SIZE), META_KEY_ID: writer.key_field.hex(),
                                META_ALGORITHM: str(writer.algorithm)})
            progress = Progress(os.path.basename(path), size, self.progress_stream)
            part = part_size_for(size)
            try:
                if size <= part:
                    length = self._length(enc, 0, size)
                    self.client.put_object(dest.bucket, dest.key,
                                           lambda: self._body(path, fd, enc, 0, size, progress), length, headers)
                else:
                    self._multipart(path, fd, size, part, enc, dest, headers, progress)
            except S3Error as e:
                raise TransferError(f"{path} to {dest}: {e}") from None
            after = os.fstat(fd)
            progress.close()
            if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
                raise FileChanged(path)
        finally:
            os.close(fd)
        self._say(f"upload: {path} to {dest}")

    def _refuse_plaintext_over_ciphertext(self, dest: S3Url) -> None:
        """A forgotten COFFRE_CSE_KEY_FILE must not replace an encrypted backup with plaintext:
        writing plaintext over a client-side encrypted object takes an explicit --no-encrypt."""
        try:
            head = self.client.head_object(dest.bucket, dest.key)
        except S3Error as e:
            if e.status == 403:  # a writer that may not read: nothing to compare with
                return
            raise TransferError(f"{dest}: {e}") from None
        if head is not None and META_CSE in head:
            raise TransferError(f"{dest} is encrypted on the client: give its key (--key-file or "
                                "COFFRE_CSE_KEY_FILE), or --no-encrypt to replace it with plaintext")

    @staticmethod
    def _length(enc: cse.Encryptor | None, start: int, end: int) -> int:
        if enc is None:
            return end - start
        segments = max(1, -(-(end - start) // SEGMENT_SIZE)) if start == 0 else -(-(end - start) // SEGMENT_SIZE)
        return (cse.HEADER_SIZE if start == 0 else 0) + (end - start) + cse.TAG_SIZE * segments

    @staticmethod
    def _body(path: str, fd: int, enc: cse.Encryptor | None, start: int, end: int,
              progress: Progress) -> Iterator[bytes]:
        """The bytes of plaintext range [start, end) as sent: read, encrypted, one segment at a time."""
        if enc is not None and start == 0:
            yield enc.header.to_bytes()
        index, offset = start // SEGMENT_SIZE, start
        while offset < end or (enc is not None and offset == end == 0 and index == 0):
            n = min(SEGMENT_SIZE, end - offset)
            data = os.pread(fd, n, offset) if n else b""
            if len(data) != n:
                raise FileChanged(path)
            yield enc.encrypt_segment(index, data) if enc is not None else data
            progress.add(n)
            offset += n
            index += 1
            if n == 0:
                break

    def _multipart(self, path: str, fd: int, size: int, part: int, enc: cse.Encryptor | None, dest: S3Url,
                   headers: dict[str, str], progress: Progress) -> None:
        upload_id = self.client.create_multipart_upload(dest.bucket, dest.key, headers)
        try:
            ranges = [(start, min(start + part, size)) for start in range(0, size, part)]

            def send(number: int, start: int, end: int) -> str:
                return self.client.upload_part(dest.bucket, dest.key, upload_id, number,
                                               lambda: self._body(path, fd, enc, start, end, progress),
                                               self._length(enc, start, end))

            with ThreadPoolExecutor(CONCURRENCY, thread_name_prefix="coffre-part") as pool:
                futures: list[Future[str]] = [pool.submit(send, n, s, e) for n, (s, e) in enumerate(ranges, 1)]
                try:
                    etags = [f.result() for f in futures]
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
            self.client.complete_multipart_upload(dest.bucket, dest.key, upload_id, etags)
        except BaseException:
            try:
                self.client.abort_multipart_upload(dest.bucket, dest.key, upload_id)
            except (S3Error, ConnectionFailed):
                pass  # the first error is the one to report; an orphan upload expires by lifecycle
            raise

    # -- download --
    def download(self, src: S3Url, path: str, rng: tuple[int | None, int | None] | None = None) -> None:
        if self.dry_run:
            self._say(f"(dry run) download: {src} to {path}")
            return
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        tmp = os.path.join(directory, f".{os.path.basename(path)}.coffre-{secrets.token_hex(4)}.part")
        # Owner-only while it may hold plaintext that has not been fully authenticated yet.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                try:
                    if self.key is not None and not self.raw:
                        self._download_decrypt(src, out, rng)
                    else:
                        self._download_plain(src, out, rng)
                except (cse.CseError, S3Error) as e:
                    raise TransferError(f"{src}: {e}") from None
                out.flush()
                os.fsync(out.fileno())
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        self._say(f"download: {src} to {path}")

    def _download_plain(self, src: S3Url, out: IO[bytes], rng: tuple[int | None, int | None] | None) -> None:
        if rng is not None:
            head = self.client.head_object(src.bucket, src.key)
            if head is None:
                raise S3Error(404, "NoSuchKey", "The specified key does not exist.")
            self._refuse_encrypted(src, head)
            first, last = resolve_range(rng, int(head.get("content-length", "0")))
            resp = self.client.get_object(src.bucket, src.key, first, last)
        else:
            resp = self.client.get_object(src.bucket, src.key)
        with resp:
            self._refuse_encrypted(src, resp.headers)
            total = int(resp.headers.get("content-length", "0"))
            progress = Progress(os.path.basename(src.key), total, self.progress_stream)
            first_chunk = True
            while chunk := resp.read(1024 * 1024):
                if first_chunk and not self.raw and chunk.startswith(cse.MAGIC):
                    self._refuse_encrypted(src, {META_CSE: "1"})
                first_chunk = False
                out.write(chunk)
                progress.add(len(chunk))
            progress.close()

    def _refuse_encrypted(self, src: S3Url, headers: dict[str, str]) -> None:
        if META_CSE in headers and not self.raw:
            raise TransferError(f"{src} is encrypted on the client: give its key (--key-file or "
                                "COFFRE_CSE_KEY_FILE), or --no-encrypt to copy the ciphertext as stored")

    def _open(self, src: S3Url, header: bytes) -> cse.Decryptor | None:
        """The object's decryptor, or None for an object that is not client-side encrypted and may
        be copied as it is (--allow-plaintext)."""
        assert self.key is not None
        try:
            return cse.open_object(self.key, header)
        except cse.NotEncrypted:
            if self.allow_plaintext:
                return None
            raise TransferError(f"{src} is not encrypted on the client: pass --allow-plaintext to download "
                                "it as it is") from None

    def _download_decrypt(self, src: S3Url, out: IO[bytes], rng: tuple[int | None, int | None] | None) -> None:
        if rng is not None:
            self._download_decrypt_range(src, out, rng)
            return
        with self.client.get_object(src.bucket, src.key) as resp:
            header = resp.read_exactly(cse.HEADER_SIZE)
            dec = self._open(src, header)
            if dec is None:
                out.write(header)
                while chunk := resp.read(1024 * 1024):
                    out.write(chunk)
                return
            h = dec.header
            progress = Progress(os.path.basename(src.key), h.plaintext_size, self.progress_stream)
            for index in range(h.segments):
                plain = dec.decrypt_segment(index, resp.read_exactly(h.segment_plaintext_size(index) + cse.TAG_SIZE))
                out.write(plain)
                progress.add(len(plain))
            if resp.read(1):
                raise cse.AuthenticationFailed("the end of the object (bytes after the final segment)")
            progress.close()

    def _download_decrypt_range(self, src: S3Url, out: IO[bytes], rng: tuple[int | None, int | None]) -> None:
        try:
            with self.client.get_object(src.bucket, src.key, 0, cse.HEADER_SIZE - 1) as resp:
                header = resp.read()
        except S3Error as e:
            if e.status != 416:  # an empty object: a range of it is not satisfiable
                raise
            header = b""
        dec = self._open(src, header)
        if dec is None:
            self._download_plain(src, out, rng)
            return
        h = dec.header
        first, last = resolve_range(rng, h.plaintext_size)
        c0, c1 = h.ciphertext_range(first, last)
        s0, s1 = first // h.segment_size, last // h.segment_size
        with self.client.get_object(src.bucket, src.key, c0, c1) as resp:
            # The object's true size must be the one its (authenticated) header implies: a
            # truncated or extended object is refused even when the range misses its end.
            total = resp.headers.get("content-range", "").rpartition("/")[2]
            if resp.status != 206 or total != str(h.object_size):
                raise cse.AuthenticationFailed("the end of the object (its size does not match its header)")
            progress = Progress(os.path.basename(src.key), last - first + 1, self.progress_stream)
            for index in range(s0, s1 + 1):
                plain = dec.decrypt_segment(index, resp.read_exactly(h.segment_plaintext_size(index) + cse.TAG_SIZE))
                lo = first - index * h.segment_size if index == s0 else 0
                hi = last - index * h.segment_size + 1 if index == s1 else len(plain)
                out.write(plain[lo:hi])
                progress.add(hi - lo)
            progress.close()

    # -- trees --
    def remote_matches(self, path: str, dest: S3Url, listed_size: int | None) -> bool:
        """Whether the object at ``dest`` already holds the file at ``path``: same size, then the
        same digest (keyed by the user's key when encrypting: a different key means a new upload)."""
        if listed_size is None:
            return False
        size = os.stat(path).st_size
        expected = cse.ciphertext_size(size, SEGMENT_SIZE) if self.key else size
        if listed_size != expected:
            return False
        head = self.client.head_object(dest.bucket, dest.key)
        if head is None or (META_CSE in head) != (self.key is not None):
            return False
        stored = head.get(META_DIGEST, "")
        if not stored:
            return False
        key = self._key_of(head) if self.key is not None else None
        if self.key is not None and key is None:
            return False  # another key: the file is sent again, encrypted with this one
        return hmac.compare_digest(stored, self.local_digest(path, key))

    def local_matches(self, src: S3Url, path: str) -> bool:
        """Whether the local file at ``path`` already holds the object ``src``: same plaintext size,
        then the same digest; an object without a digest (not written by coffre) is compared by
        size and modification time instead."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return False
        head = self.client.head_object(src.bucket, src.key)
        if head is None:
            return False
        encrypted = META_CSE in head and not self.raw
        size = int(head.get(META_SIZE, "-1") if encrypted else head.get("content-length", "-1"))
        if size != st.st_size:
            return False
        stored = head.get(META_DIGEST, "")
        if stored and encrypted == (self.key is not None) and stored.startswith(self._digest_label()):
            key = self._key_of(head) if self.key is not None else None
            if self.key is None or key is not None:
                return hmac.compare_digest(stored, self.local_digest(path, key))
        try:
            modified = parsedate_to_datetime(head.get("last-modified", "")).timestamp()
        except (TypeError, ValueError):
            return False
        return modified <= st.st_mtime

    def upload_tree(self, root: str, dest: S3Url, only_changed: bool, delete: bool) -> int:
        prefix = dest.key if not dest.key or dest.key.endswith("/") else dest.key + "/"
        local = dict(_walk(root))
        remote = dict(self.client.list_objects(dest.bucket, prefix)) if (only_changed or delete) else {}
        count = 0
        for rel, path in sorted(local.items()):
            target = S3Url(dest.bucket, prefix + rel)
            if only_changed and self.remote_matches(path, target, remote.get(target.key)):
                continue
            self.upload(path, target)
            count += 1
        if delete:
            for key in sorted(set(remote) - {prefix + rel for rel in local}):
                if self.dry_run:
                    self._say(f"(dry run) delete: s3://{dest.bucket}/{key}")
                else:
                    self.client.delete_object(dest.bucket, key)
                    self._say(f"delete: s3://{dest.bucket}/{key}")
        return count

    def download_tree(self, src: S3Url, root: str, only_changed: bool, delete: bool) -> int:
        prefix = src.key if not src.key or src.key.endswith("/") else src.key + "/"
        wanted: dict[str, str] = {}
        count = 0
        for key, _size in self.client.list_objects(src.bucket, prefix):
            rel = key[len(prefix):]
            if not rel or rel.endswith("/"):
                continue  # a "folder" marker, not a file
            path = _local_path(root, rel)
            if path is None:
                print(f"coffre: skipping s3://{src.bucket}/{key}: not a safe local file name", file=sys.stderr)
                continue
            wanted[os.path.normpath(path)] = key
            if only_changed and self.local_matches(S3Url(src.bucket, key), path):
                continue
            self.download(S3Url(src.bucket, key), path)
            count += 1
        if delete:
            for _rel, path in sorted(_walk(root)):
                if os.path.normpath(path) not in wanted:
                    if self.dry_run:
                        self._say(f"(dry run) delete: {path}")
                    else:
                        os.unlink(path)
                        self._say(f"delete: {path}")
        return count


def _walk(root: str) -> Iterator[tuple[str, str]]:
    """(key suffix with "/" separators, path) of every regular file under ``root``; symbolic links
    to directories are not followed (no cycles), temporary files of interrupted downloads skipped."""
    for directory, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(directory, name)
            if name.startswith(".") and name.endswith(".part") and ".coffre-" in name:
                continue
            if os.path.isfile(path):
                yield os.path.relpath(path, root).replace(os.sep, "/"), path


def _local_path(root: str, rel: str) -> str | None:
    """Where a key lands under ``root``; None when the key would escape it (".." or an absolute
    part): a bucket's contents must never write outside the directory the user named."""
    parts = rel.split("/")
    if any(p in ("", ".", "..") or os.sep in p or (os.altsep and os.altsep in p) or "\0" in p for p in parts):
        return None
    return os.path.join(root, *parts)


# -- commands --
def _read_passphrase_file(path: str) -> str:
    """The first line of a file that only its owner can read (it is as secret as a key file)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if os.fstat(fd).st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise PermissionError(f"the passphrase file {path} is readable by others: chmod 600 {path}")
        raw = os.read(fd, 4096)
    finally:
        os.close(fd)
    return raw.decode("utf-8").splitlines()[0] if raw.strip() else ""


def _user_key(args: argparse.Namespace) -> cse.KeySource | None:
    """The key: --key-file or --passphrase-file, else one of COFFRE_CSE_KEY_FILE,
    COFFRE_CSE_PASSPHRASE_FILE, COFFRE_CSE_PASSPHRASE; two at once is an error, not a guess."""
    if args.no_encrypt:
        if args.encrypt or args.key_file or args.passphrase_file:
            raise ValueError("--no-encrypt contradicts --encrypt, --key-file and --passphrase-file")
        return None
    given = [(n, v) for n, v in (("--key-file", args.key_file), ("--passphrase-file", args.passphrase_file)) if v]
    if not given:
        given = [(n, os.environ[n]) for n in ("COFFRE_CSE_KEY_FILE", "COFFRE_CSE_PASSPHRASE_FILE",
                                              "COFFRE_CSE_PASSPHRASE") if os.environ.get(n)]
    if len(given) > 1:
        raise ValueError(f"{' and '.join(n for n, _ in given)} both name a key: give one")
    if not given:
        if args.encrypt:
            raise ValueError("--encrypt needs a key: --key-file PATH or COFFRE_CSE_KEY_FILE "
                             "(make one with `coffre keygen PATH`), or a passphrase (--passphrase-file)")
        return None
    name, value = given[0]
    if name.endswith("key-file") or name == "COFFRE_CSE_KEY_FILE":
        return cse.UserKey.from_file(value)
    if name == "COFFRE_CSE_PASSPHRASE":
        return cse.PassphraseKey(value)
    return cse.PassphraseKey(_read_passphrase_file(value))


def _transfers(args: argparse.Namespace) -> Transfers:
    client = S3Client(resolve_endpoint(args.endpoint_url), resolve_credentials(args.profile),
                      ca_file=args.ca_bundle)
    progress = not args.quiet and not args.no_progress and sys.stderr.isatty()
    return Transfers(client, _user_key(args), allow_plaintext=args.allow_plaintext, raw=args.no_encrypt,
                     progress=progress, quiet=args.quiet, dry_run=getattr(args, "dry_run", False))


def _run(action: Callable[[], None]) -> int:
    try:
        action()
    except (cse.CseError, TransferError, S3Error) as e:
        _error(str(e))
        return 1
    except ConnectionFailed as e:
        _error(str(e))
        return 2
    return 0


def _error(message: str) -> None:
    # On a terminal, first clear a progress bar the failure interrupted.
    print(("\r\x1b[K" if sys.stderr.isatty() else "") + f"coffre: {message}", file=sys.stderr)


def _cp(args: argparse.Namespace) -> int:
    src, dst = parse_s3_url(args.source), parse_s3_url(args.destination)
    if (src is None) == (dst is None):
        raise ValueError("one of SOURCE and DESTINATION must be s3://bucket/key, the other a local path")
    rng = parse_range(args.range) if args.range else None
    if rng is not None and (src is None or args.recursive):
        raise ValueError("--range applies to the download of one object")
    t = _transfers(args)

    def run() -> None:
        if dst is not None:
            if args.recursive:
                if not os.path.isdir(args.source):
                    raise ValueError(f"{args.source} is not a directory")
                t.upload_tree(args.source, dst, only_changed=False, delete=False)
                return
            if os.path.isdir(args.source):
                raise ValueError(f"{args.source} is a directory: use -r")
            key = dst.key + os.path.basename(args.source) if not dst.key or dst.key.endswith("/") else dst.key
            t.upload(args.source, S3Url(dst.bucket, key))
        else:
            assert src is not None
            if args.recursive:
                t.download_tree(src, args.destination, only_changed=False, delete=False)
                return
            if not src.key or src.key.endswith("/"):
                raise ValueError(f"{args.source} names no object (use -r for a prefix)")
            path = args.destination
            if os.path.isdir(path) or path.endswith(("/", os.sep)):
                path = os.path.join(path, src.key.rsplit("/", 1)[-1])
            t.download(src, path, rng)

    return _run(run)


def _sync(args: argparse.Namespace) -> int:
    src, dst = parse_s3_url(args.source), parse_s3_url(args.destination)
    if (src is None) == (dst is None):
        raise ValueError("one of SOURCE and DESTINATION must be s3://bucket/prefix/, the other a local directory")
    t = _transfers(args)

    def run() -> None:
        if dst is not None:
            if not os.path.isdir(args.source):
                raise ValueError(f"{args.source} is not a directory")
            t.upload_tree(args.source, dst, only_changed=True, delete=args.delete)
        else:
            assert src is not None
            os.makedirs(args.destination, exist_ok=True)
            t.download_tree(src, args.destination, only_changed=True, delete=args.delete)

    return _run(run)


def _keygen(args: argparse.Namespace) -> int:
    try:
        cse.write_key_file(args.path)
    except FileExistsError:
        raise ValueError(f"{args.path} exists; a key file is never overwritten (its objects would be lost)") \
            from None
    print(f"wrote a new client-side encryption key to {args.path} (mode 0600). Keep a copy somewhere safe: "
          "without it, nobody can read what it encrypted.")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--endpoint-url", help="S3 endpoint (env AWS_ENDPOINT_URL, default http://127.0.0.1:9000)")
    p.add_argument("--profile", help="a profile of ~/.aws/credentials (default: AWS_* environment, then AWS_PROFILE "
                                     "or default)")
    p.add_argument("--ca-bundle", help="PEM CA certificates for an https endpoint (env AWS_CA_BUNDLE)")
    p.add_argument("--key-file", help="client-side encryption key (made by `coffre keygen`; env COFFRE_CSE_KEY_FILE): "
                                      "encrypt uploads, decrypt downloads")
    p.add_argument("--passphrase-file", help="encrypt / decrypt with a passphrase (the first line of this file, "
                                             "mode 0600; env COFFRE_CSE_PASSPHRASE_FILE or COFFRE_CSE_PASSPHRASE) "
                                             "instead of a key file")
    p.add_argument("--encrypt", action="store_true", help="refuse to run without a key")
    p.add_argument("--no-encrypt", action="store_true",
                   help="ignore any key: upload as is, download the bytes as stored")
    p.add_argument("--allow-plaintext", action="store_true",
                   help="with a key, download objects that are not encrypted on the client as they are")
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")
    p.add_argument("--no-progress", action="store_true", help="no progress bar, even on a terminal")


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("cp", help="copy files to or from S3, optionally encrypted on the client",
                       description="Copy a file (or a tree with -r) to or from S3. See docs/client-side-encryption.md.")
    p.add_argument("source", help="local path or s3://bucket/key")
    p.add_argument("destination", help="local path or s3://bucket/key (a trailing / keeps the source's name)")
    p.add_argument("-r", "--recursive", action="store_true", help="copy a directory tree or a whole prefix")
    p.add_argument("--range", help="download only plaintext bytes a-b (inclusive), a- or -n")
    _common(p)
    p.set_defaults(func=_cp)
    p = sub.add_parser("sync", help="copy only changed files between a directory and an S3 prefix",
                       description="Upload (or download) the files whose size or digest differ; delete "
                                   "nothing unless --delete. See docs/client-side-encryption.md.")
    p.add_argument("source", help="local directory or s3://bucket/prefix/")
    p.add_argument("destination", help="local directory or s3://bucket/prefix/")
    p.add_argument("--delete", action="store_true", help="also delete what the source no longer has")
    p.add_argument("--dry-run", action="store_true", help="print what would be done, do nothing")
    _common(p)
    p.set_defaults(func=_sync)
    p = sub.add_parser("keygen", help="make a client-side encryption key file (32 random bytes, mode 0600)")
    p.add_argument("path", help="the new key file (never overwritten)")
    p.set_defaults(func=_keygen)
