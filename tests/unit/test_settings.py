"""Settings: documented in full, read with defaults < TOML < environment < command line, strict TOML."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import MISSING, fields
from pathlib import Path

import pytest

from coffre.settings import Settings, load_settings
from tests.server import free_port

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
ROW = re.compile(r"^\| `(\w+)` \| `(COFFRE_\w+)` \| (.+?) \| (.+) \|$")


def _doc_rows() -> dict[str, tuple[str, str]]:
    """setting -> (environment variable, default cell) from the table of docs/configuration.md."""
    rows = {}
    for line in DOC.read_text().splitlines():
        m = ROW.match(line)
        if m:
            rows[m.group(1)] = (m.group(2), m.group(3))
    return rows


def test_every_setting_is_documented():
    rows = _doc_rows()
    names = [f.name for f in fields(Settings)]
    missing = [n for n in names if n not in rows]
    assert not missing, f"settings missing from docs/configuration.md: {missing}"
    stale = sorted(set(rows) - set(names))
    assert not stale, f"docs/configuration.md documents settings that do not exist: {stale}"
    for name in names:
        assert rows[name][0] == f"COFFRE_{name.upper()}", name


def test_documented_defaults_are_the_real_ones():
    for f in fields(Settings):
        cell = _doc_rows()[f.name][1]
        assert f.default is not MISSING, f.name
        if f.default is None:
            assert cell == "unset", f"{f.name}: documented default {cell!r}, real default None"
            continue
        m = re.fullmatch(r"`([^`]+)`", cell)
        assert m, f"{f.name}: default cell {cell!r} is not one TOML value in backticks"
        documented = tomllib.loads(f"v = {m.group(1)}")["v"]
        real = list(f.default) if isinstance(f.default, tuple) else f.default
        assert documented == real and type(documented) is type(real), \
            f"{f.name}: documented default {documented!r}, real default {real!r}"


def test_cli_flags_are_documented():
    from coffre.cli.main import build_parser

    text = DOC.read_text()
    serve = build_parser()._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    # Internal flags (hidden from --help: a secondary worker's --worker-channel) are no user's to document.
    flags = [opt for a in serve._actions for opt in a.option_strings
             if opt.startswith("--") and opt != "--help" and a.help != argparse.SUPPRESS]
    assert sorted(flags) == ["--address", "--admin-address", "--config", "--data-dir", "--tls-cert", "--tls-key",
                             "--workers"]
    for flag in flags:
        assert f"`{flag}" in text, f"{flag} is not documented in docs/configuration.md"


def test_defaults_without_file_or_environment():
    assert load_settings(None, env={}) == Settings()
    s = Settings()
    assert (s.address, s.data_dir, s.region) == ("127.0.0.1:9000", "./coffre-data", "us-east-1")


def _toml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "coffre.toml"
    path.write_text(text)
    return str(path)


def test_precedence_defaults_toml_env_cli(tmp_path: Path):
    cfg = _toml(tmp_path, 'address = "127.0.0.1:1111"\ndata_dir = "/toml"\nregion = "eu-west-3"\n'
                          "max_parts = 50\nkeepalive-timeout = 5.5\n")
    env = {"COFFRE_ADDRESS": "127.0.0.1:2222", "COFFRE_DATA_DIR": "/env", "COFFRE_MAX_PARTS": "70",
           "COFFRE_LOG_LEVEL": "DEBUG"}
    s = load_settings(cfg, env=env, address="127.0.0.1:3333", data_dir=None)
    assert s.address == "127.0.0.1:3333"  # flag over environment over file
    assert s.data_dir == "/env"  # no flag: environment over file
    assert s.max_parts == 70 and isinstance(s.max_parts, int)
    assert s.region == "eu-west-3"  # file over default
    assert s.keepalive_timeout == 5.5  # "-" stands for "_" in TOML keys
    assert s.log_level == "DEBUG"  # environment over default
    assert s.max_object_size == Settings().max_object_size  # default where nothing says otherwise


def test_empty_environment_value_counts_as_unset(tmp_path: Path):
    cfg = _toml(tmp_path, 'region = "eu-west-3"\n')
    assert load_settings(cfg, env={"COFFRE_REGION": ""}).region == "eu-west-3"


def test_environment_types(tmp_path: Path):
    s = load_settings(None, env={"COFFRE_VIRTUAL_HOST_DOMAINS": "s3.example.com, s3.internal",
                                 "COFFRE_KEEPALIVE_TIMEOUT": "2.5", "COFFRE_GC_GRACE_SECONDS": "10",
                                 "COFFRE_ROOT_ACCESS_KEY": "AKTEST", "COFFRE_ROOT_SECRET_KEY": "secret"})
    assert s.virtual_host_domains == ("s3.example.com", "s3.internal")
    assert s.keepalive_timeout == 2.5 and s.gc_grace_seconds == 10
    assert (s.root_access_key, s.root_secret_key) == ("AKTEST", "secret")
    assert "secret" not in repr(s)  # secrets stay out of logs and tracebacks
    with pytest.raises(ValueError):
        load_settings(None, env={"COFFRE_MAX_PARTS": "many"})


def test_toml_array_for_domains(tmp_path: Path):
    cfg = _toml(tmp_path, 'virtual_host_domains = ["a.example", "b.example"]\n')
    assert load_settings(cfg, env={}).virtual_host_domains == ("a.example", "b.example")


def test_unknown_toml_key_is_rejected(tmp_path: Path):
    cfg = _toml(tmp_path, 'adress = "127.0.0.1:9000"\n')
    with pytest.raises(ValueError, match="adress"):
        load_settings(cfg, env={})


def test_cli_refuses_to_start_on_unknown_toml_key(tmp_path: Path):
    cfg = _toml(tmp_path, "max_partz = 3\n")
    proc = subprocess.run([sys.executable, "-m", "coffre", "serve", "--config", cfg, "--data-dir",
                           str(tmp_path / "data")], capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 2, proc
    assert "max_partz" in proc.stderr
    assert not (tmp_path / "data").exists()


def test_cli_flag_wins_over_environment_and_file(tmp_path: Path):
    """The real command: the address it listens on comes from --address, not env or file."""
    ports = [free_port() for _ in range(4)]
    cfg = _toml(tmp_path, f'address = "127.0.0.1:{ports[0]}"\ndata_dir = "{tmp_path / "toml-data"}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("COFFRE_")}
    env.update({"COFFRE_ADDRESS": f"127.0.0.1:{ports[1]}", "COFFRE_ADMIN_ADDRESS": f"127.0.0.1:{ports[3]}",
                "COFFRE_ROOT_ACCESS_KEY": "AKCLITEST0000001",
                "COFFRE_ROOT_SECRET_KEY": "cli-test-secret-0000000000"})
    proc = subprocess.Popen([sys.executable, "-m", "coffre", "serve", "--config", cfg,
                             "--address", f"127.0.0.1:{ports[2]}"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    try:
        first = proc.stdout.readline()  # type: ignore[union-attr]
    finally:
        proc.terminate()
        proc.wait(15)
    assert first.startswith(f"coffre listening on http://127.0.0.1:{ports[2]} "), first
    assert str(tmp_path / "toml-data") in first  # data_dir came from the file
