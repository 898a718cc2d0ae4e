"""``coffre cp`` / ``coffre sync`` with client-side encryption, against a real server.

The commands run as subprocesses (as a user runs them); boto3 looks at what the server holds.
"""

from __future__ import annotations

import hashlib
import os
import pty
import select
import subprocess
import sys

import pytest

from coffre.crypto import clientside as cse

SEG = cse.DEFAULT_SEGMENT_SIZE
MiB = 1024 * 1024


def run(args: list[str], endpoint: str, credentials: tuple[str, str], key_file: str | None = None,
        **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "COFFRE_CSE"))}
    env.update({"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": credentials[0],
                "AWS_SECRET_ACCESS_KEY": credentials[1], "HOME": kwargs.pop("home", env.get("HOME", "/tmp"))})
    if key_file:
        env["COFFRE_CSE_KEY_FILE"] = key_file
    env.update(kwargs.pop("env", {}))
    return subprocess.run([sys.executable, "-m", "coffre", *args], env=env, capture_output=True, timeout=300,
                          **kwargs)


@pytest.fixture
def cli(endpoint, credentials):
    def call(*args: str, key: str | None = None, ok: bool = True, **kw) -> subprocess.CompletedProcess:
        res = run(list(args), endpoint, credentials, key, **kw)
        if ok:
            assert res.returncode == 0, res.stderr.decode()
        return res
    return call


@pytest.fixture
def key_file(tmp_path):
    path = str(tmp_path / "cse.key")
    res = subprocess.run([sys.executable, "-m", "coffre", "keygen", path], capture_output=True)
    assert res.returncode == 0, res.stderr
    return path


@pytest.fixture
def other_key(tmp_path):
    path = str(tmp_path / "other.key")
    cse.write_key_file(path)
    return path


def pattern(size: int, seed: bytes = b"") -> bytes:
    """Distinct, recognisable plaintext (each 32-byte block is a hash of its index)."""
    out = bytearray()
    i = 0
    while len(out) < size:
        out += hashlib.sha256(seed + i.to_bytes(8, "big")).digest()
        i += 1
    return bytes(out[:size])


def write(path, data: bytes) -> str:
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


@pytest.mark.parametrize("size", [0, 1000, SEG, 3 * SEG + 7, 40 * MiB], ids=["empty", "small", "one-segment",
                                                                             "multi-segment", "multipart"])
def test_round_trip_and_the_server_holds_only_ciphertext(s3, bucket, cli, key_file, tmp_path, size):
    data = pattern(size, b"round trip")
    src = write(tmp_path / "in.bin", data)
    cli("cp", src, f"s3://{bucket}/obj", key=key_file)
    stored = s3.get_object(Bucket=bucket, Key="obj")
    body = stored["Body"].read()
    assert len(body) == cse.ciphertext_size(size)
    assert body.startswith(cse.MAGIC)
    # no 32-byte block of the plaintext (64 of them at most, spread over the file) is visible
    assert not any(data[i:i + 32] in body for i in range(0, size, max(4096, size // 64)))
    meta = stored["Metadata"]
    assert meta["coffre-cse"] == "1" and meta["coffre-cse-plaintext-size"] == str(size)
    assert meta["coffre-cse-segment-size"] == str(SEG)
    assert meta["coffre-digest"].startswith("hmac-sha256:")
    assert hashlib.sha256(data).hexdigest() not in str(meta)
    if size > 16 * MiB:
        assert stored["ETag"].endswith('-3"')  # a multipart upload of three 16 MiB parts
    out = tmp_path / "out.bin"
    cli("cp", f"s3://{bucket}/obj", str(out), key=key_file)
    assert out.read_bytes() == data


def test_no_plaintext_in_the_data_directory(server, s3, bucket, cli, key_file, tmp_path):
    if server is None:
        pytest.skip("inspects a local server's data directory")
    data = b"CLIENT-SIDE-PLAINTEXT-MARKER " * 5000
    cli("cp", write(tmp_path / "p.txt", data), f"s3://{bucket}/p.txt", key=key_file)
    needle = b"CLIENT-SIDE-PLAINTEXT-MARKER"
    hits = []
    for d, _, files in os.walk(server.data_dir):
        for f in files:
            try:
                with open(os.path.join(d, f), "rb") as fh:
                    if needle in fh.read():
                        hits.append(f)
            except FileNotFoundError:
                pass
    assert hits == []
    assert needle not in s3.get_object(Bucket=bucket, Key="p.txt")["Body"].read()


def test_ranged_reads_at_segment_edges(s3, bucket, cli, key_file, tmp_path):
    size = 3 * SEG + 100
    data = pattern(size, b"ranges")
    cli("cp", write(tmp_path / "r.bin", data), f"s3://{bucket}/r", key=key_file)
    out = tmp_path / "part"
    cases = {"0-0": data[0:1], f"{SEG - 1}-{SEG}": data[SEG - 1:SEG + 1], f"{SEG}-{2 * SEG - 1}": data[SEG:2 * SEG],
             f"{SEG - 1}-{3 * SEG}": data[SEG - 1:3 * SEG + 1], f"{3 * SEG}-{size - 1}": data[3 * SEG:],
             f"0-{size + 1000}": data, f"{2 * SEG + 5}-": data[2 * SEG + 5:], "-10": data[-10:],
             f"{size - 1}-{size - 1}": data[-1:]}
    for rng, expected in cases.items():
        cli("cp", f"s3://{bucket}/r", str(out), "--range", rng, key=key_file)
        assert out.read_bytes() == expected, rng
    res = cli("cp", f"s3://{bucket}/r", str(out), "--range", f"{size}-{size + 5}", key=key_file, ok=False)
    assert res.returncode == 1 and b"outside the object" in res.stderr


def test_ranged_read_fetches_only_the_segments_it_needs(server, s3, bucket, key_file, tmp_path, endpoint,
                                                        credentials):
    # In-process, through the same client the command uses, counting the bytes the server sent.
    from coffre.cli import s3client, transfer

    data = pattern(20 * SEG, b"partial")
    client = s3client.S3Client(endpoint, s3client.Credentials(*credentials))
    t = transfer.Transfers(client, cse.UserKey.from_file(key_file), quiet=True)
    t.upload(write(tmp_path / "f", data), transfer.S3Url(bucket, "f"))
    fetched: list[int] = []
    real_get = client.get_object

    def counting_get(b, k, first=None, last=None):
        fetched.append((last - first + 1) if first is not None and last is not None else -1)
        return real_get(b, k, first, last)

    client.get_object = counting_get  # type: ignore[method-assign]
    t.download(transfer.S3Url(bucket, "f"), str(tmp_path / "g"), (5 * SEG + 10, 6 * SEG + 10))
    assert (tmp_path / "g").read_bytes() == data[5 * SEG + 10:6 * SEG + 11]
    assert fetched == [cse.HEADER_SIZE, 2 * (SEG + 16)]


def test_wrong_key_is_refused_and_leaves_no_file(bucket, cli, key_file, other_key, tmp_path):
    cli("cp", write(tmp_path / "a", b"secret stuff"), f"s3://{bucket}/a", key=key_file)
    out = tmp_path / "dl" / "a"
    res = cli("cp", f"s3://{bucket}/a", str(out), key=other_key, ok=False)
    assert res.returncode == 1
    assert b"the key does not open this object" in res.stderr
    assert not out.exists() and os.listdir(tmp_path / "dl") == []
    res = cli("cp", f"s3://{bucket}/a", str(out), "--range", "0-3", key=other_key, ok=False)
    assert b"the key does not open this object" in res.stderr


def _tamper(s3, bucket, key, change):
    obj = s3.get_object(Bucket=bucket, Key=key)
    body = change(bytearray(obj["Body"].read()))
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(body), Metadata=obj["Metadata"])


def test_tampering_truncation_and_swaps_are_detected(s3, bucket, cli, key_file, tmp_path):
    data = pattern(4 * SEG + 50, b"tamper")
    src = write(tmp_path / "t", data)
    out = tmp_path / "out"
    H, C = cse.HEADER_SIZE, SEG + 16

    def flip(b):
        b[H + 2 * C + 1000] ^= 1
        return b

    def truncate(b):
        return b[:H + 4 * C]  # the final segment dropped, at a segment boundary

    def swap(b):
        return b[:H] + b[H + C:H + 2 * C] + b[H:H + C] + b[H + 2 * C:]

    def header(b):
        b[20] ^= 1  # the file nonce
        return b

    def extend(b):
        return b + bytes(16)

    expected = {flip: b"authentication failed at segment 2", truncate: b"authentication failed at segment 4",
                swap: b"authentication failed at segment 0", header: b"authentication failed at the header",
                extend: b"authentication failed at the end of the object"}
    for change, message in expected.items():
        cli("cp", src, f"s3://{bucket}/t", key=key_file)
        _tamper(s3, bucket, "t", change)
        res = cli("cp", f"s3://{bucket}/t", str(out), key=key_file, ok=False)
        assert res.returncode == 1, change.__name__
        assert message in res.stderr, (change.__name__, res.stderr)
        assert not out.exists()
        assert [f for f in os.listdir(tmp_path) if ".part" in f] == []
    # A ranged read of an untouched segment still notices that the object was truncated.
    cli("cp", src, f"s3://{bucket}/t", key=key_file)
    _tamper(s3, bucket, "t", truncate)
    res = cli("cp", f"s3://{bucket}/t", str(out), "--range", "0-10", key=key_file, ok=False)
    assert b"does not match its header" in res.stderr
    # and a flipped byte in the segment a range reads
    cli("cp", src, f"s3://{bucket}/t", key=key_file)
    _tamper(s3, bucket, "t", flip)
    res = cli("cp", f"s3://{bucket}/t", str(out), "--range", f"{2 * SEG}-{2 * SEG + 1}", key=key_file, ok=False)
    assert b"authentication failed at segment 2" in res.stderr
    cli("cp", f"s3://{bucket}/t", str(out), "--range", "0-10", key=key_file)
    assert out.read_bytes() == data[:11]


def test_plain_and_encrypted_objects_are_not_confused(s3, bucket, cli, key_file, tmp_path):
    s3.put_object(Bucket=bucket, Key="plain", Body=b"not encrypted")
    out = tmp_path / "o"
    res = cli("cp", f"s3://{bucket}/plain", str(out), key=key_file, ok=False)
    assert res.returncode == 1 and b"not encrypted on the client" in res.stderr and not out.exists()
    cli("cp", f"s3://{bucket}/plain", str(out), "--allow-plaintext", key=key_file)
    assert out.read_bytes() == b"not encrypted"
    cli("cp", f"s3://{bucket}/plain", str(out), "--allow-plaintext", "--range", "4-6", key=key_file)
    assert out.read_bytes() == b"enc"
    # an encrypted object without its key: refused, unless the stored bytes are asked for
    cli("cp", write(tmp_path / "s", b"hidden"), f"s3://{bucket}/enc", key=key_file)
    res = cli("cp", f"s3://{bucket}/enc", str(out), ok=False)
    assert res.returncode == 1 and b"encrypted on the client" in res.stderr
    cli("cp", f"s3://{bucket}/enc", str(out), "--no-encrypt")
    assert out.read_bytes().startswith(cse.MAGIC)
    # --encrypt without a key is refused before anything is sent
    res = cli("cp", str(tmp_path / "s"), f"s3://{bucket}/x", "--encrypt", ok=False)
    assert res.returncode == 2 and b"--encrypt needs a key" in res.stderr
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="x")
    # without a key at all, cp is a plain copy
    cli("cp", str(tmp_path / "s"), f"s3://{bucket}/x")
    assert s3.get_object(Bucket=bucket, Key="x")["Body"].read() == b"hidden"
    # ... but a forgotten key does not replace an encrypted object with plaintext
    res = cli("cp", str(tmp_path / "s"), f"s3://{bucket}/enc", ok=False)
    assert res.returncode == 1 and b"--no-encrypt to replace it" in res.stderr
    assert s3.get_object(Bucket=bucket, Key="enc")["Body"].read().startswith(cse.MAGIC)
    write(tmp_path / "up" / "enc", b"plain")
    res = cli("sync", str(tmp_path / "up"), f"s3://{bucket}/", ok=False)
    assert res.returncode == 1 and b"is encrypted on the client" in res.stderr
    assert s3.get_object(Bucket=bucket, Key="enc")["Body"].read().startswith(cse.MAGIC)
    cli("cp", str(tmp_path / "s"), f"s3://{bucket}/enc", "--no-encrypt")
    assert s3.get_object(Bucket=bucket, Key="enc")["Body"].read() == b"hidden"


def _etags(s3, bucket, prefix=""):
    return {o["Key"]: o["ETag"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])}


def test_sync_uploads_only_changed_files_and_deletes_only_when_asked(s3, bucket, cli, key_file, tmp_path):
    src = tmp_path / "src"
    write(src / "a.txt", b"alpha" * 100)
    write(src / "b.txt", b"bravo" * 100)
    write(src / "sub" / "c.bin", pattern(2 * SEG + 1, b"c"))
    res = cli("sync", str(src), f"s3://{bucket}/backup/", key=key_file)
    assert res.stdout.decode().count("upload:") == 3
    first = _etags(s3, bucket)
    assert set(first) == {"backup/a.txt", "backup/b.txt", "backup/sub/c.bin"}
    # nothing changed: nothing sent
    res = cli("sync", str(src), f"s3://{bucket}/backup/", key=key_file)
    assert res.stdout == b"" and _etags(s3, bucket) == first
    # same size, other content; a new file; a file gone
    write(src / "b.txt", b"BRAVO" * 100)
    write(src / "d.txt", b"delta")
    os.unlink(src / "a.txt")
    res = cli("sync", str(src), f"s3://{bucket}/backup/", key=key_file)
    assert sorted(line.split()[1] for line in res.stdout.decode().splitlines()) == [str(src / "b.txt"),
                                                                                  str(src / "d.txt")]
    second = _etags(s3, bucket)
    assert second["backup/a.txt"] == first["backup/a.txt"]  # not deleted without --delete
    assert second["backup/sub/c.bin"] == first["backup/sub/c.bin"]
    assert second["backup/b.txt"] != first["backup/b.txt"] and "backup/d.txt" in second
    res = cli("sync", str(src), f"s3://{bucket}/backup/", "--delete", "--dry-run", key=key_file)
    assert "backup/a.txt" in _etags(s3, bucket) and b"(dry run) delete" in res.stdout
    cli("sync", str(src), f"s3://{bucket}/backup/", "--delete", key=key_file)
    assert set(_etags(s3, bucket)) == {"backup/b.txt", "backup/d.txt", "backup/sub/c.bin"}
    # a different key: every file is sent again (the digests are keyed)
    other = str(tmp_path / "k2")
    cse.write_key_file(other)
    res = cli("sync", str(src), f"s3://{bucket}/backup/", key=other)
    assert res.stdout.decode().count("upload:") == 3
    cli("sync", str(src), f"s3://{bucket}/backup/", key=key_file)

    # and back: a fresh tree, then only what differs
    dst = tmp_path / "dst"
    res = cli("sync", f"s3://{bucket}/backup/", str(dst), key=key_file)
    assert res.stdout.decode().count("download:") == 3
    for rel in ("b.txt", "d.txt", "sub/c.bin"):
        assert (dst / rel).read_bytes() == (src / rel).read_bytes()
    res = cli("sync", f"s3://{bucket}/backup/", str(dst), key=key_file)
    assert res.stdout == b""
    write(dst / "d.txt", b"DELTA")
    write(dst / "extra.txt", b"only here")
    res = cli("sync", f"s3://{bucket}/backup/", str(dst), key=key_file)
    assert res.stdout.decode().count("download:") == 1 and (dst / "d.txt").read_bytes() == b"delta"
    assert (dst / "extra.txt").exists()
    cli("sync", f"s3://{bucket}/backup/", str(dst), "--delete", key=key_file)
    assert not (dst / "extra.txt").exists()


def test_recursive_copy_and_unsafe_keys(s3, bucket, cli, key_file, tmp_path):
    src = tmp_path / "tree"
    write(src / "x" / "1", b"one")
    write(src / "2", b"two")
    cli("cp", "-r", str(src), f"s3://{bucket}/t", key=key_file)
    assert set(_etags(s3, bucket)) == {"t/x/1", "t/2"}
    # a key that would land outside the target directory is skipped
    s3.put_object(Bucket=bucket, Key="t/../../escape", Body=b"x")
    out = tmp_path / "out" / "inner"
    res = cli("cp", "-r", f"s3://{bucket}/t/", str(out), key=key_file, ok=False)
    assert b"not a safe local file name" in res.stderr
    assert (out / "x" / "1").read_bytes() == b"one" and (out / "2").read_bytes() == b"two"
    assert not (tmp_path / "escape").exists() and not (tmp_path / "out" / "escape").exists()


def test_profile_from_the_credentials_file(bucket, endpoint, credentials, tmp_path):
    home = tmp_path / "home"
    write(home / ".aws" / "credentials",
          f"[work]\naws_access_key_id = {credentials[0]}\naws_secret_access_key = {credentials[1]}\n".encode())
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["HOME"] = str(home)
    f = write(tmp_path / "f", b"profile")
    res = subprocess.run([sys.executable, "-m", "coffre", "cp", f, f"s3://{bucket}/f", "--profile", "work",
                          "--endpoint-url", endpoint], env=env, capture_output=True)
    assert res.returncode == 0, res.stderr
    res = subprocess.run([sys.executable, "-m", "coffre", "cp", f, f"s3://{bucket}/f", "--profile", "nope",
                          "--endpoint-url", endpoint], env=env, capture_output=True)
    assert res.returncode == 2 and b"no [nope] profile" in res.stderr


# The command runs in-process under a launcher that reads the process's own high-water mark of
# resident memory (VmHWM) when the command is done. (The rusage of a child would not do: it
# counts the memory of the forked test process before exec.)
_MEASURED = ("import sys\nfrom coffre.cli.main import main\nrc = main(sys.argv[1:])\n"
             "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1]\n"
             "sys.stderr.write('VmHWM ' + hwm + '\\n')\nsys.exit(rc)\n")


def _peak_rss_kib(args: list[str], endpoint, credentials, key_file) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": credentials[0],
                "AWS_SECRET_ACCESS_KEY": credentials[1], "COFFRE_CSE_KEY_FILE": key_file})
    res = subprocess.run([sys.executable, "-c", _MEASURED, *args], env=env, capture_output=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return int(res.stderr.decode().rsplit("VmHWM ", 1)[1].split()[0])


def test_memory_stays_constant_for_a_large_file(bucket, endpoint, credentials, key_file, tmp_path):
    size = 160 * MiB
    src = tmp_path / "big"
    with open(src, "wb") as f:  # written in pieces: the test itself stays small too
        for i in range(size // MiB):
            f.write(pattern(MiB, i.to_bytes(4, "big")) if i % 16 == 0 else bytes([i % 251]) * MiB)
    small = write(tmp_path / "small", b"s" * 1024)
    base = _peak_rss_kib(["cp", small, f"s3://{bucket}/small"], endpoint, credentials, key_file)
    up = _peak_rss_kib(["cp", str(src), f"s3://{bucket}/big"], endpoint, credentials, key_file)
    down = _peak_rss_kib(["cp", f"s3://{bucket}/big", str(tmp_path / "back")], endpoint, credentials, key_file)
    print(f"peak resident memory: 1 KiB upload {base} KiB, 160 MiB upload {up} KiB, download {down} KiB")
    # Four parts in flight stream in 64 KiB segments: a few MiB over what copying 1 KiB takes.
    # Holding one 16 MiB part per thread (64 MiB), let alone the file, would exceed this.
    assert up < base + 24 * 1024, f"upload peaked at {up} KiB (1 KiB upload: {base} KiB)"
    assert down < base + 24 * 1024, f"download peaked at {down} KiB (1 KiB upload: {base} KiB)"
    with open(src, "rb") as a, open(tmp_path / "back", "rb") as b:
        while True:
            x, y = a.read(MiB), b.read(MiB)
            assert x == y
            if not x:
                break


def _read_all(fd: int, proc: subprocess.Popen) -> bytes:
    out = b""
    while True:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the other side closed
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    return out


def test_progress_bar_on_a_terminal_and_silence_in_a_pipe(bucket, endpoint, credentials, key_file, tmp_path):
    src = write(tmp_path / "p", pattern(3 * MiB, b"progress"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": credentials[0],
                "AWS_SECRET_ACCESS_KEY": credentials[1], "COFFRE_CSE_KEY_FILE": key_file})
    main, replica = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "coffre", "cp", src, f"s3://{bucket}/p"], env=env,
                            stdout=subprocess.DEVNULL, stderr=replica)
    os.close(replica)
    seen = _read_all(main, proc)
    os.close(main)
    assert proc.wait(60) == 0, seen
    assert b"100%" in seen and b"3.0 MiB / 3.0 MiB" in seen and b"\r" in seen
    # piped: no bar, no control characters; the result line only on stdout
    res = run(["cp", src, f"s3://{bucket}/p"], endpoint, credentials, key_file)
    assert res.returncode == 0 and res.stderr == b""
    assert res.stdout.decode().startswith("upload: ")
    res = run(["cp", f"s3://{bucket}/p", str(tmp_path / "q"), "-q"], endpoint, credentials, key_file)
    assert res.returncode == 0 and res.stdout == b"" and res.stderr == b""


def test_over_https_with_a_private_ca(tmp_path, key_file):
    if os.environ.get("COFFRE_TEST_ENDPOINT"):
        pytest.skip("starts its own HTTPS coffre server")
    from tests.server import ACCESS_KEY, SECRET_KEY, Server

    certs = tmp_path / "certs"
    made = subprocess.run([sys.executable, "-m", "coffre", "dev-cert", "--out", str(certs)], capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=60)
    assert made.returncode == 0, made.stderr
    cert = str(certs / "coffre-dev.crt")
    srv = Server(str(tmp_path / "data"), env={"COFFRE_TLS_CERT": cert,
                                              "COFFRE_TLS_KEY": str(certs / "coffre-dev.key")}).start()
    try:
        endpoint = f"https://127.0.0.1:{srv.port}"
        import boto3

        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", verify=cert,
                          aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
        s3.create_bucket(Bucket="cse-tls")
        data = pattern(20 * MiB, b"tls")  # multipart, over TLS
        src = write(tmp_path / "f", data)
        creds = (ACCESS_KEY, SECRET_KEY)
        res = run(["cp", src, "s3://cse-tls/f", "--ca-bundle", cert], endpoint, creds, key_file)
        assert res.returncode == 0, res.stderr
        res = run(["cp", "s3://cse-tls/f", str(tmp_path / "g"), "--range", "100-200"], endpoint, creds, key_file,
                  env={"AWS_CA_BUNDLE": cert})
        assert res.returncode == 0, res.stderr
        assert (tmp_path / "g").read_bytes() == data[100:201]
        assert s3.head_object(Bucket="cse-tls", Key="f")["Metadata"]["coffre-cse"] == "1"
        # without the CA, the server is not trusted: refused at once, nothing sent
        res = run(["cp", src, "s3://cse-tls/h"], endpoint, creds, key_file)
        assert res.returncode == 2 and b"certificate is not trusted" in res.stderr
        assert "Contents" not in s3.list_objects_v2(Bucket="cse-tls", Prefix="h")
    finally:
        srv.stop()


def test_passphrase_round_trip_sync_and_wrong_passphrase(s3, bucket, cli, key_file, tmp_path):
    pfile = write(tmp_path / "pass", b"a long enough passphrase\n")
    os.chmod(pfile, 0o600)
    src = tmp_path / "src"
    write(src / "a", pattern(SEG + 3, b"pp-a"))
    write(src / "b", b"bee")
    res = cli("sync", str(src), f"s3://{bucket}/pp/", "--passphrase-file", pfile)
    assert res.stdout.decode().count("upload:") == 2
    head = s3.head_object(Bucket=bucket, Key="pp/a")
    assert head["Metadata"]["coffre-cse-algorithm"] == "2"
    body = s3.get_object(Bucket=bucket, Key="pp/a")["Body"].read()
    assert body[9] == 2 and pattern(SEG + 3, b"pp-a")[:32] not in body
    # a second run (another salt for what it would write) finds nothing changed
    res = cli("sync", str(src), f"s3://{bucket}/pp/", env={"COFFRE_CSE_PASSPHRASE": "a long enough passphrase"})
    assert res.stdout == b""
    out = tmp_path / "out"
    cli("cp", f"s3://{bucket}/pp/a", str(out), "--range", f"{SEG}-", "--passphrase-file", pfile)
    assert out.read_bytes() == pattern(SEG + 3, b"pp-a")[SEG:]
    res = cli("cp", f"s3://{bucket}/pp/a", str(out), ok=False, env={"COFFRE_CSE_PASSPHRASE": "not the passphrase"})
    assert res.returncode == 1 and b"the key does not open this object" in res.stderr
    res = cli("cp", f"s3://{bucket}/pp/b", str(out), key=key_file, ok=False)
    assert res.returncode == 1 and b"encrypted with a passphrase" in res.stderr
    res = cli("cp", f"s3://{bucket}/pp/b", str(out), "--passphrase-file", pfile, key=key_file, ok=False)
    assert res.returncode == 0 and out.read_bytes() == b"bee"  # the option wins over the environment
    res = cli("cp", f"s3://{bucket}/pp/b", str(out), ok=False, key=key_file,
              env={"COFFRE_CSE_PASSPHRASE": "a long enough passphrase"})
    assert res.returncode == 2 and b"give one" in res.stderr
    os.chmod(pfile, 0o644)
    res = cli("cp", f"s3://{bucket}/pp/b", str(out), "--passphrase-file", pfile, ok=False)
    assert res.returncode == 2 and b"readable by others" in res.stderr
