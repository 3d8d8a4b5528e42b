"""TLS contexts, checked with real handshakes over 127.0.0.1.

Selection is asserted twice over the wire: the client compares the certificate it received with the
one issued for the expected name, and the server reports what ``selected_certificate`` saw.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import trustme
import uvloop

from forecourt.http.tls import (
    CertificateSpec,
    SNITable,
    TLSConfigError,
    build_client_context,
    build_server_context,
    build_sni_table,
    check_snis,
    selected_certificate,
    validate_certificate,
)

# --------------------------------------------------------------------------------------------------
# Fixtures


def spec_for(
    cert: trustme.LeafCert, id: str, snis: tuple[str, ...] = (), alt: trustme.LeafCert | None = None
) -> CertificateSpec:
    def chain(leaf: trustme.LeafCert) -> str:
        return "".join(blob.bytes().decode() for blob in leaf.cert_chain_pems)

    return CertificateSpec(
        id=id,
        cert=chain(cert),
        key=cert.private_key_pem.bytes().decode(),
        snis=snis,
        cert_alt=chain(alt) if alt else None,
        key_alt=alt.private_key_pem.bytes().decode() if alt else None,
    )


def leaf_der(cert: trustme.LeafCert) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.cert_chain_pems[0].bytes().decode())


@dataclasses.dataclass
class Issued:
    ca: trustme.CA
    exact: trustme.LeafCert  # a.example.test
    prefix: trustme.LeafCert  # *.b.example.test
    suffix: trustme.LeafCert  # served for c.example.*
    fallback: trustme.LeafCert  # the explicit default

    def specs(self) -> list[CertificateSpec]:
        return [
            spec_for(self.exact, "exact", ("a.example.test",)),
            spec_for(self.prefix, "prefix", ("*.b.example.test",)),
            spec_for(self.suffix, "suffix", ("c.example.*",)),
        ]

    def default_spec(self) -> CertificateSpec:
        return spec_for(self.fallback, "default")


@pytest.fixture(scope="module")
def issued() -> Issued:
    ca = trustme.CA()
    return Issued(
        ca=ca,
        exact=ca.issue_cert("a.example.test"),
        prefix=ca.issue_cert("*.b.example.test"),
        suffix=ca.issue_cert("suffix.example.test", key_type=trustme.KeyType.RSA),
        fallback=ca.issue_cert("default.example.test"),
    )


class TLSServer:
    """A thread accepting TLS connections; each one gets the id of the certificate served."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self.handshake_failures = 0
        self._thread = threading.Thread(target=self._serve, name="tls-test-server")
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    with self._context.wrap_socket(conn, server_side=True) as tls:
                        chosen = selected_certificate(tls)
                        tls.sendall((chosen.id if chosen else "?").encode())
                except (ssl.SSLError, OSError):
                    self.handshake_failures += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()


@pytest.fixture
def serve() -> Iterator[Callable[[ssl.SSLContext], TLSServer]]:
    servers: list[TLSServer] = []

    def start(context: ssl.SSLContext) -> TLSServer:
        server = TLSServer(context)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def handshake(port: int, context: ssl.SSLContext, server_name: str | None) -> tuple[bytes, str]:
    """Connect, complete the handshake, and return (peer certificate DER, id the server reported)."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        received = b""
        while chunk := tls.recv(256):
            received += chunk
        return der, received.decode()


def trusting_client(ca: trustme.CA, check_hostname: bool = True) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(context)
    context.check_hostname = check_hostname
    return context


# --------------------------------------------------------------------------------------------------
# SNI selection over the wire


@pytest.mark.parametrize(
    ("server_name", "expected", "check_hostname"),
    [
        ("a.example.test", "exact", True),
        ("A.Example.Test", "exact", True),
        ("x.b.example.test", "prefix", True),
        ("c.example.org", "suffix", False),
        ("unknown.example.test", "default", False),
        ("y.x.b.example.test", "default", False),  # a prefix wildcard covers one label only
        (None, "default", False),  # no SNI sent
    ],
)
def test_server_presents_certificate_chosen_by_sni(
    issued: Issued,
    serve: Callable[[ssl.SSLContext], TLSServer],
    server_name: str | None,
    expected: str,
    check_hostname: bool,
) -> None:
    server = serve(build_server_context(issued.specs(), default=issued.default_spec()))
    leaves = {
        "exact": issued.exact,
        "prefix": issued.prefix,
        "suffix": issued.suffix,
        "default": issued.fallback,
    }

    der, reported = handshake(server.port, trusting_client(issued.ca, check_hostname), server_name)

    assert der == leaf_der(leaves[expected])
    assert reported == expected


def test_first_certificate_is_default_without_explicit_one(
    issued: Issued, serve: Callable[[ssl.SSLContext], TLSServer]
) -> None:
    server = serve(build_server_context(issued.specs()))

    der, reported = handshake(server.port, trusting_client(issued.ca, check_hostname=False), None)

    assert (der, reported) == (leaf_der(issued.exact), "exact")


def test_catch_all_sni_wins_over_default(
    issued: Issued, serve: Callable[[ssl.SSLContext], TLSServer]
) -> None:
    specs = [*issued.specs(), spec_for(issued.fallback, "catch-all", ("*",))]
    server = serve(build_server_context(specs))

    _, unknown = handshake(server.port, trusting_client(issued.ca, False), "unknown.example.test")
    _, no_sni = handshake(server.port, trusting_client(issued.ca, False), None)

    assert unknown == "catch-all"
    assert no_sni == "exact"  # "*" is a name; without SNI Kong serves the default


def test_server_negotiates_http11_with_modern_protocols(
    issued: Issued, serve: Callable[[ssl.SSLContext], TLSServer]
) -> None:
    table = build_sni_table(issued.specs())
    server = serve(table.context)
    client = trusting_client(issued.ca)
    client.set_alpn_protocols(["h2", "http/1.1"])

    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
        client.wrap_socket(raw, server_hostname="x.b.example.test") as tls,
    ):
        assert tls.selected_alpn_protocol() == "http/1.1"
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    # Every context a handshake may switch to carries the same policy. (A TLS 1.1 handshake is not
    # attempted: the client side of it raises DeprecationWarning, an error under our pytest config.)
    assert {context.minimum_version for context in table.contexts.values()} == {ssl.TLSVersion.TLSv1_2}


def test_alternate_certificate_serves_rsa_only_clients(
    issued: Issued, serve: Callable[[ssl.SSLContext], TLSServer]
) -> None:
    rsa = issued.ca.issue_cert("a.example.test", key_type=trustme.KeyType.RSA)
    server = serve(build_server_context([spec_for(issued.exact, "dual", ("a.example.test",), alt=rsa)]))
    rsa_only = trusting_client(issued.ca)
    rsa_only.maximum_version = ssl.TLSVersion.TLSv1_2  # TLS 1.2 suites name the key type
    rsa_only.set_ciphers("ECDHE-RSA-AES128-GCM-SHA256")

    ecdsa_der, _ = handshake(server.port, trusting_client(issued.ca), "a.example.test")
    rsa_der, reported = handshake(server.port, rsa_only, "a.example.test")

    assert ecdsa_der == leaf_der(issued.exact)
    assert rsa_der == leaf_der(rsa)
    assert reported == "dual"


@pytest.mark.parametrize(
    "loop_factory", [asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"]
)
def test_sni_selection_under_event_loops(
    issued: Issued, loop_factory: Callable[[], asyncio.AbstractEventLoop]
) -> None:
    """The gateway terminates TLS in asyncio/uvloop, where the callback sees an ``SSLObject``."""
    context = build_server_context(issued.specs(), default=issued.default_spec())

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        chosen = selected_certificate(writer.get_extra_info("ssl_object"))
        writer.write((chosen.id if chosen else "?").encode())
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def fetch(port: int, name: str) -> str:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=trusting_client(issued.ca, False), server_hostname=name
        )
        try:
            return (await reader.read()).decode()
        finally:
            writer.close()
            await writer.wait_closed()

    async def main() -> list[str]:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
        async with server:
            port = server.sockets[0].getsockname()[1]
            names = ["a.example.test", "x.b.example.test", "c.example.org", "other.test"]
            return [await asyncio.wait_for(fetch(port, name), 5) for name in names]

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        assert runner.run(main()) == ["exact", "prefix", "suffix", "default"]


# --------------------------------------------------------------------------------------------------
# Precedence, table-driven without handshakes


def lookup_table(issued: Issued) -> SNITable:
    exact, prefix, suffix, star = (
        spec_for(issued.exact, "exact", ("www.p.example.test",)),
        spec_for(issued.prefix, "prefix", ("*.p.example.test", "*.example.test")),
        spec_for(issued.suffix, "suffix", ("www.p.example.*", "p.example.*")),
        spec_for(issued.fallback, "star", ("*",)),
    )
    return build_sni_table([exact, prefix, suffix, star])


@pytest.mark.parametrize(
    ("server_name", "expected"),
    [
        ("www.p.example.test", "exact"),  # exact beats both wildcards
        ("WWW.P.Example.Test.", "exact"),  # case and trailing dot do not matter
        ("api.p.example.test", "prefix"),  # prefix beats suffix
        ("www.p.example.org", "suffix"),
        ("p.example.org", "suffix"),
        ("p.example.test", "prefix"),  # *.example.test
        ("example.test", "star"),  # two labels: no prefix wildcard is tried (Kong)
        ("a.api.p.example.test", "star"),
        ("p.example.co.uk", "star"),  # a suffix wildcard covers one label only
        (None, "exact"),  # no SNI: the first certificate
        ("", "exact"),
    ],
)
def test_precedence(issued: Issued, server_name: str | None, expected: str) -> None:
    assert lookup_table(issued).select(server_name).certificate.id == expected


def test_table_exposes_every_context(issued: Issued) -> None:
    table = lookup_table(issued)

    assert sorted(table.contexts) == ["exact", "prefix", "star", "suffix"]
    assert table.context is table.contexts["exact"]
    assert table.context.sni_callback is not None


# --------------------------------------------------------------------------------------------------
# Validation


def test_valid_certificate_has_no_problems(issued: Issued) -> None:
    assert validate_certificate(spec_for(issued.exact, "ok")) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"cert": "not a certificate"}, "cert: could not parse PEM certificate: no '-----BEGIN"),
        (
            {"cert": "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"},
            "cert: could not parse PEM certificate: invalid base64",
        ),
        (
            {"cert": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"},
            "cert: could not parse PEM certificate: not a valid X.509 certificate",
        ),
        ({"cert": ""}, "cert: is empty"),
        ({"key": "not a key"}, "key: could not parse PEM private key: no '-----BEGIN"),
        (
            {"key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"},
            "key: could not parse PEM private key",
        ),
    ],
)
def test_invalid_pem_is_reported(issued: Issued, change: dict[str, Any], expected: str) -> None:
    problems = validate_certificate(dataclasses.replace(spec_for(issued.exact, "c"), **change))

    assert len(problems) == 1
    assert problems[0].startswith(expected)


@pytest.mark.parametrize("key_type", [trustme.KeyType.ECDSA, trustme.KeyType.RSA])
def test_mismatched_key_is_reported(issued: Issued, key_type: trustme.KeyType) -> None:
    other = issued.ca.issue_cert("other.example.test", key_type=key_type)
    spec = dataclasses.replace(spec_for(issued.exact, "c"), key=other.private_key_pem.bytes().decode())

    assert validate_certificate(spec) == [
        "key: private key does not match the certificate (the first certificate in cert must be the leaf)"
    ]


def test_private_key_in_cert_field_is_reported(issued: Issued) -> None:
    spec = spec_for(issued.exact, "c")
    combined = dataclasses.replace(spec, cert=spec.cert + spec.key)

    assert validate_certificate(combined) == ["cert: contains a private key; put it in the key field"]


def test_encrypted_key_is_reported_without_prompting(issued: Issued) -> None:
    serialization = pytest.importorskip("cryptography.hazmat.primitives.serialization")
    key = serialization.load_pem_private_key(issued.exact.private_key_pem.bytes(), password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    ).decode()
    spec = dataclasses.replace(spec_for(issued.exact, "c"), key=encrypted)

    assert validate_certificate(spec) == ["key: encrypted private keys are not supported"]


def test_expired_certificate_is_reported(issued: Issued) -> None:
    expired = issued.ca.issue_cert(
        "old.example.test",
        not_before=datetime(2019, 1, 1, tzinfo=UTC),
        not_after=datetime(2020, 1, 1, tzinfo=UTC),
    )

    assert validate_certificate(spec_for(expired, "old")) == [
        "cert: certificate expired on 2020-01-01T00:00:00Z"
    ]
    assert validate_certificate(spec_for(expired, "old"), now=datetime(2019, 6, 1, tzinfo=UTC)) == []


def test_alternate_pair_problems(issued: Issued) -> None:
    spec = spec_for(issued.exact, "c")
    rsa = spec_for(issued.ca.issue_cert("a.example.test", key_type=trustme.KeyType.RSA), "r")

    assert validate_certificate(dataclasses.replace(spec, cert_alt=rsa.cert, key_alt=rsa.key)) == []
    assert validate_certificate(dataclasses.replace(spec, cert_alt=rsa.cert)) == [
        "key_alt: is required when cert_alt is set"
    ]
    assert validate_certificate(dataclasses.replace(spec, cert_alt=spec.cert, key_alt=spec.key)) == [
        "cert_alt: certificate and alternate certificate need different key types "
        "(e.g. RSA and ECDSA); both are ECDSA"
    ]
    assert validate_certificate(dataclasses.replace(spec, cert_alt=rsa.cert, key_alt=spec.key)) == [
        "key_alt: private key does not match the certificate (the first certificate in cert must be the leaf)"
    ]


def test_key_material_stays_out_of_reprs_and_errors(issued: Issued) -> None:
    spec = spec_for(issued.exact, "c", ("a.example.test",))
    lines = spec.key.splitlines()
    secret = lines[1]
    broken = dataclasses.replace(spec, key="\n".join([lines[0], "@@@@", *lines[1:]]))

    with pytest.raises(TLSConfigError) as raised:
        build_server_context([broken])

    assert secret[:16] not in repr(spec)
    assert secret[:16] not in str(raised.value)
    assert str(raised.value).startswith("certificate 'c': key: could not parse PEM private key")


def test_pem_files_are_private_and_removed(issued: Issued, monkeypatch: pytest.MonkeyPatch) -> None:
    """``ssl`` reads keys only from files: they must be owner-only and gone right after loading."""
    seen: list[tuple[str, int, int]] = []
    original = ssl.SSLContext.load_cert_chain

    def spy(self: ssl.SSLContext, certfile: str, keyfile: str | None = None, password: Any = None) -> None:
        assert keyfile is not None
        seen.append(
            (keyfile, os.stat(keyfile).st_mode & 0o777, os.stat(os.path.dirname(keyfile)).st_mode & 0o777)
        )
        original(self, certfile, keyfile, password)

    monkeypatch.setattr(ssl.SSLContext, "load_cert_chain", spy)
    build_server_context([spec_for(issued.exact, "c", ("a.example.test",))])

    assert seen
    for keyfile, file_mode, dir_mode in seen:
        assert (file_mode, dir_mode) == (0o600, 0o700)
        assert not os.path.exists(os.path.dirname(keyfile))


# --------------------------------------------------------------------------------------------------
# SNI names


def test_duplicate_snis_are_reported(issued: Issued) -> None:
    first = spec_for(issued.exact, "first", ("a.example.test", "*.b.example.test"))
    second = spec_for(issued.prefix, "second", ("A.example.test.", "c.example.test", "c.example.test"))

    assert check_snis([first, second]) == [
        "certificate 'second': SNI 'A.example.test.' is already used by certificate 'first'",
        "certificate 'second': SNI 'c.example.test' is listed more than once",
    ]
    with pytest.raises(TLSConfigError, match="already used by certificate 'first'"):
        build_server_context([first, second])


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("a.*.example.test", "wildcard must be leftmost or rightmost character"),
        ("*.example.*", "only one wildcard must be specified"),
        ("*example.test", "wildcard must be a whole label, as in '*.example.com' or 'example.*'"),
        ("a..example.test", "invalid label ''"),
        ("under score.test", "invalid label 'under score'"),
    ],
)
def test_invalid_sni_names_are_reported(issued: Issued, name: str, problem: str) -> None:
    spec = spec_for(issued.exact, "c", (name,))

    assert check_snis([spec]) == [f"certificate 'c': invalid SNI {name!r}: {problem}"]


@pytest.mark.parametrize(
    "name", ["*", "*.example.test", "example.*", "xn--bcher-kva.example", "bücher.example"]
)
def test_valid_sni_names(issued: Issued, name: str) -> None:
    assert check_snis([spec_for(issued.exact, "c", (name,))]) == []


def test_server_context_needs_a_certificate() -> None:
    with pytest.raises(TLSConfigError, match="at least one certificate"):
        build_server_context([])


# --------------------------------------------------------------------------------------------------
# Client contexts


def test_client_verification_requires_the_ca(
    issued: Issued, serve: Callable[[ssl.SSLContext], TLSServer]
) -> None:
    server = serve(build_server_context(issued.specs()))
    ca_pem = issued.ca.cert_pem.bytes().decode()

    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(server.port, build_client_context(verify=True), "a.example.test")

    _, reported = handshake(
        server.port, build_client_context(verify=True, ca_pems=[ca_pem]), "a.example.test"
    )
    assert reported == "exact"


def test_client_checks_the_hostname(issued: Issued, serve: Callable[[ssl.SSLContext], TLSServer]) -> None:
    server = serve(build_server_context(issued.specs(), default=issued.default_spec()))
    context = build_client_context(ca_pems=[issued.ca.cert_pem.bytes().decode()])

    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        handshake(server.port, context, "unknown.example.test")


def test_client_without_verification_accepts_untrusted_servers(
    issued: Issued, serve: Callable[[ssl.SSLContext], TLSServer]
) -> None:
    server = serve(build_server_context(issued.specs(), default=issued.default_spec()))

    _, reported = handshake(server.port, build_client_context(verify=False), "unknown.example.test")

    assert reported == "default"


def test_client_presents_its_certificate(
    issued: Issued, serve: Callable[[ssl.SSLContext], TLSServer]
) -> None:
    client_leaf = issued.ca.issue_cert("gateway.example.test")
    mutual = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    issued.exact.configure_cert(mutual)
    issued.ca.configure_trust(mutual)
    mutual.verify_mode = ssl.CERT_REQUIRED
    server = serve(mutual)
    ca_pem = issued.ca.cert_pem.bytes().decode()

    with_cert = build_client_context(ca_pems=[ca_pem], client_cert=spec_for(client_leaf, "gw"))
    handshake(server.port, with_cert, "a.example.test")
    assert server.handshake_failures == 0

    with pytest.raises((ssl.SSLError, ConnectionError)):
        handshake(server.port, build_client_context(ca_pems=[ca_pem]), "a.example.test")


def test_client_rejects_bad_input(issued: Issued) -> None:
    with pytest.raises(TLSConfigError, match="ca certificate 0: could not parse PEM certificate"):
        build_client_context(ca_pems=["garbage"])
    bad = dataclasses.replace(spec_for(issued.exact, "gw"), key="garbage")
    with pytest.raises(TLSConfigError, match="client certificate 'gw': key: "):
        build_client_context(client_cert=bad)
