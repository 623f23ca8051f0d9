"""Key files: generated, encrypted, loaded, and refused when wrong."""

import json
import stat

import pytest
from cryptography.hazmat.primitives import serialization

import signing.keys
from signing.exceptions import KeyStoreError
from signing.keys import generate_signer, load_public_key, load_signer, save_key, save_public_key

PASS = b"s3cret passphrase"


@pytest.fixture(scope="module", params=["ed25519", "ecdsa"])
def signer(request):
    return generate_signer(request.param)


def test_round_trip_signs_and_verifies(signer, tmp_path):
    path = tmp_path / "k.key"
    save_key(signer, path, PASS)
    loaded = load_signer(path, PASS)
    assert loaded.public_key == signer.public_key
    sig = loaded.sign(b"payload")
    signer.public_key.verify_signature(sig, b"payload")


def test_key_types_are_tuf_standard():
    assert generate_signer("ed25519").public_key.scheme == "ed25519"
    ecdsa = generate_signer("ecdsa").public_key
    assert (ecdsa.keytype, ecdsa.scheme) == ("ecdsa", "ecdsa-sha2-nistp256")
    with pytest.raises(KeyStoreError, match="not supported"):
        generate_signer("rsa")


def test_file_is_private_encrypted_and_never_overwritten(signer, tmp_path):
    path = tmp_path / "k.key"
    save_key(signer, path, PASS)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = json.loads(path.read_text())
    assert doc["keyid"] == signer.public_key.keyid
    assert doc["keyval"] == signer.public_key.keyval
    assert doc["encrypted_private_key"].startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert doc["kdf"]["name"] == "scrypt" and doc["kdf"]["n"] == signing.keys.SCRYPT_N
    # the private key is not readable without the (stretched) passphrase
    with pytest.raises(TypeError):
        serialization.load_pem_private_key(doc["encrypted_private_key"].encode(), None)
    before = path.read_bytes()
    with pytest.raises(KeyStoreError, match="already exists"):
        save_key(generate_signer(), path, PASS)
    assert path.read_bytes() == before


def test_production_scrypt_cost_meets_owasp():
    # the autouse fixture lowers it for speed; the module default must stay strong
    import importlib.util

    spec = importlib.util.find_spec("signing.keys")
    source = spec.loader.get_source("signing.keys")
    assert "SCRYPT_N = 2**17" in source


def test_wrong_passphrase_refused(signer, tmp_path):
    path = tmp_path / "k.key"
    save_key(signer, path, PASS)
    with pytest.raises(KeyStoreError, match="wrong passphrase"):
        load_signer(path, b"not it")


def test_empty_passphrase_refused(tmp_path):
    with pytest.raises(KeyStoreError, match="empty passphrase"):
        save_key(generate_signer(), tmp_path / "k.key", b"")


def test_public_key_from_key_file_pub_file_and_pem(signer, tmp_path):
    save_key(signer, tmp_path / "k.key", PASS)
    save_public_key(signer.public_key, tmp_path / "k.pub")
    assert load_public_key(tmp_path / "k.key") == signer.public_key
    assert load_public_key(tmp_path / "k.pub") == signer.public_key
    assert "encrypted_private_key" not in json.loads((tmp_path / "k.pub").read_text())
    pem = signer._private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "k.pem").write_bytes(pem)
    assert load_public_key(tmp_path / "k.pem").keyid == signer.public_key.keyid
    with pytest.raises(KeyStoreError, match="only a public key"):
        load_signer(tmp_path / "k.pub", PASS)


def test_tampered_key_files_refused(tmp_path):
    a, b = generate_signer(), generate_signer()
    save_public_key(a.public_key, tmp_path / "a.pub")
    doc = json.loads((tmp_path / "a.pub").read_text())
    doc["keyval"] = b.public_key.keyval  # claims a's key id for b's key
    (tmp_path / "forged.pub").write_text(json.dumps(doc))
    with pytest.raises(KeyStoreError, match="does not match"):
        load_public_key(tmp_path / "forged.pub")
    (tmp_path / "junk.key").write_text("not json")
    with pytest.raises(KeyStoreError, match="not a key file"):
        load_signer(tmp_path / "junk.key", PASS)
    with pytest.raises(KeyStoreError, match="does not exist"):
        load_signer(tmp_path / "missing.key", PASS)


def test_the_appliance_key_reader_names_each_bad_file(tmp_path):
    """signing.keys.read_ed25519_private_key, which the timestamp key and the
    export identity share: each kind of bad file is refused by kind, with its
    path; a folder where the key belongs included (it opens, then fails to
    read: that used to escape as a bare IsADirectoryError)."""
    import pytest
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from signing.keys import PrivateKeyFileError, read_ed25519_private_key

    def pem(key) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    good = tmp_path / "good.pem"
    good.write_bytes(pem(Ed25519PrivateKey.generate()))
    assert isinstance(read_ed25519_private_key(good, "the key"), Ed25519PrivateKey)
    (tmp_path / "folder.pem").mkdir()
    (tmp_path / "damaged.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot base64\n")
    (tmp_path / "ec.pem").write_bytes(pem(ec.generate_private_key(ec.SECP256R1())))
    (tmp_path / "link.pem").symlink_to(good)
    for name, kind in (("missing.pem", "missing"), ("folder.pem", "unreadable"), ("damaged.pem", "damaged"),
                       ("ec.pem", "not-ed25519"), ("link.pem", "unreadable")):
        with pytest.raises(PrivateKeyFileError) as refused:
            read_ed25519_private_key(tmp_path / name, "the key")
        assert refused.value.kind == kind and str(tmp_path / name) in str(refused.value), (name, refused.value)
