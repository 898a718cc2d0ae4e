"""The root key provider chosen by the settings: secrets stay out of the settings' repr and of
errors, a bad choice stops the start, and the root key can live in a key service speaking the
hold-your-own-key protocol (the reference `coffre keyserver`, started here over TLS)."""

from __future__ import annotations

from pathlib import Path

import pytest

from coffre.cli.admin import ApiError
from coffre.crypto.providers import build_provider
from coffre.settings import load_settings
from tests.conftest import make_client
from tests.keyservice import KeyService
from tests.server import ACCESS_KEY, SECRET_KEY, Server
from tests.tenants import admin_client


def test_secrets_stay_out_of_the_settings_repr(tmp_path: Path) -> None:
    s = load_settings(env={"COFFRE_KEY_PROVIDER": "pkcs11", "COFFRE_PKCS11_PIN": "918273645",
                           "COFFRE_ROOT_KEY_SERVICE_TOKEN": "tok-5647382910", "COFFRE_DATA_DIR": str(tmp_path)})
    assert s.pkcs11_pin == "918273645" and s.root_key_service_token == "tok-5647382910"
    assert "918273645" not in repr(s) and "tok-5647382910" not in repr(s)
    # Missing options are named, the values never.
    with pytest.raises(ValueError, match="pkcs11_module") as exc:
        build_provider(s)
    assert "918273645" not in str(exc.value)


def test_an_unknown_provider_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="key_provider must be one of file, pkcs11, kmip, external"):
        build_provider(load_settings(env={"COFFRE_KEY_PROVIDER": "vault", "COFFRE_DATA_DIR": str(tmp_path)}))


def test_the_root_key_in_an_external_key_service(tmp_path: Path) -> None:
    (tmp_path / "ks").mkdir()
    ks = KeyService(tmp_path / "ks", tls=True)
    ks.keys("create-key", "coffre-root")
    ks.start()
    srv = None
    try:
        srv = Server(str(tmp_path / "data"), env={
            "COFFRE_KEY_PROVIDER": "external", "COFFRE_ROOT_KEY_SERVICE_URL": ks.url,
            "COFFRE_ROOT_KEY_SERVICE_KEY_ID": "coffre-root", "COFFRE_ROOT_KEY_SERVICE_TOKEN": ks.token,
            "COFFRE_ROOT_KEY_SERVICE_CA_FILE": str(ks.cert)}).start()
        s3 = make_client(srv.endpoint, (ACCESS_KEY, SECRET_KEY))
        s3.create_bucket(Bucket="ext")
        s3.put_object(Bucket="ext", Key="k", Body=b"held by the key service")
        assert s3.get_object(Bucket="ext", Key="k")["Body"].read() == b"held by the key service"
        assert not (tmp_path / "data" / "root.key").exists()  # no local root key
        c = admin_client(srv)
        # The service rotates its key itself; a tenant key still rotates (wrapped by the service).
        with pytest.raises(ApiError) as exc:
            c.call("POST", "/key-versions/rotate", {})
        assert exc.value.status == 400
        c.call("POST", "/tenants/test/key-versions/rotate", {}, query={"wait": "true"})
        assert s3.get_object(Bucket="ext", Key="k")["Body"].read() == b"held by the key service"
        assert ks.token not in Path(srv.log_path).read_text()
    finally:
        if srv is not None:
            srv.stop()
        ks.stop()
