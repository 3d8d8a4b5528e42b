"""TLS contexts: termination for the proxy listeners, origination for HTTPS upstreams.

Kong's ``certificates`` and ``snis`` entities map server names to certificate/key pairs. This module
turns plain certificate data (``CertificateSpec``, filled by the config compile stage) into
``ssl.SSLContext`` objects, once per configuration snapshot:

* ``build_server_context`` builds one context per certificate up front and returns the listening
  context, whose SNI callback only does dictionary lookups and swaps the context on the connection.
  Certificate selection follows Kong (``kong/runloop/certificate.lua``):

  1. the exact server name (``api.example.com``);
  2. the name with its first label replaced by ``*`` (``*.example.com``), only for names of three or
     more labels, so a prefix wildcard covers exactly one label;
  3. the name with its last label replaced by ``*`` (``api.example.*``);
  4. the certificate that carries the catch-all SNI ``*``;
  5. the default certificate (an explicit one, else the first certificate), also used when the
     client sends no SNI.

* ``validate_certificate`` and ``check_snis`` report problems as messages for ``forecourt check``;
  ``validate_certificate`` prefixes each with the field it concerns (``cert: ...``) so the caller
  can prepend ``certificates[0].`` and a file position.
* ``build_client_context`` builds the context for HTTPS upstreams.

The ``ssl`` module reads certificates and keys only from files. PEM data is therefore written to a
private directory (mode 0700, files 0600, memory-backed ``/dev/shm`` when there is one) and removed
as soon as OpenSSL has read it. Key material never appears in messages or logs.

Errors: building a context from bad data raises ``TLSConfigError`` (a ``ValueError``); validation
returns messages instead, because a config check wants every problem at once.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import re
import shutil
import ssl
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = [
    "ALPN_PROTOCOLS",
    "CATCH_ALL_SNI",
    "CertificateContext",
    "CertificateSpec",
    "SNITable",
    "TLSConfigError",
    "build_client_context",
    "build_server_context",
    "build_sni_table",
    "check_snis",
    "normalize_server_name",
    "selected_certificate",
    "validate_certificate",
]

#: Forecourt speaks HTTP/1.1 only; advertising it lets ALPN-aware clients skip h2 negotiation.
ALPN_PROTOCOLS: tuple[str, ...] = ("http/1.1",)

# Mozilla "intermediate" TLS 1.2 suites, the same set Kong ships as ``ssl_cipher_suite = intermediate``.
# TLS 1.3 suites are not configurable through ``set_ciphers`` and OpenSSL's defaults are already fine.
# The DHE suites only take effect if DH parameters are ever loaded; ``ssl`` loads none by default.
_SERVER_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "DHE-RSA-AES128-GCM-SHA256",
        "DHE-RSA-AES256-GCM-SHA384",
    )
)

#: The SNI name Kong uses for a catch-all certificate, tried before the default one.
CATCH_ALL_SNI = "*"


class TLSConfigError(ValueError):
    """Certificates or keys that cannot be turned into a usable context.

    Raised by the ``build_*`` functions; the message names the certificate and field, never any key
    material.
    """


@dataclass(frozen=True)
class CertificateSpec:
    """One Kong ``certificates`` entity with its SNI names, as plain data.

    ``cert`` holds the leaf first, then any intermediates. ``cert_alt``/``key_alt`` are Kong's
    alternate pair of a different key type (for example ECDSA beside RSA); OpenSSL then serves
    whichever the client supports.
    """

    id: str
    cert: str
    key: str
    snis: tuple[str, ...] = ()
    cert_alt: str | None = None
    key_alt: str | None = None

    def __repr__(self) -> str:
        # Dataclass's repr would print the private keys into tracebacks and logs.
        return f"CertificateSpec(id={self.id!r}, snis={self.snis!r})"


class CertificateContext(ssl.SSLContext):
    """A server context that remembers which certificate it serves.

    The SNI callback swaps the connection's context to one of these, so after the handshake the
    connection itself tells which certificate was chosen (see ``selected_certificate``).
    """

    certificate: CertificateSpec


# --------------------------------------------------------------------------------------------------
# Server names


def normalize_server_name(name: str) -> str:
    """Return the form names are compared in: lower case, no trailing dot, IDNA A-labels.

    Clients send A-labels (``xn--...``) in the SNI extension, and Python hands them over as such, so
    configured names in Unicode are converted to match. A label that IDNA rejects is left as is and
    reported by ``check_snis``.
    """
    name = name.strip().rstrip(".").lower()
    if name.isascii():
        return name
    labels: list[str] = []
    for label in name.split("."):
        if label.isascii():
            labels.append(label)
            continue
        try:
            labels.append(label.encode("idna").decode("ascii"))
        except UnicodeError:
            labels.append(label)
    return ".".join(labels)


def _wildcard_keys(name: str) -> tuple[str | None, str | None]:
    """The prefix- and suffix-wildcard names Kong looks up for a server name, in that order.

    Mirrors Kong's ``produce_wild_snis``: only the first label may be replaced by a prefix wildcard,
    and only when at least two labels remain after it; only the last label is replaced by a suffix
    wildcard.
    """
    labels = name.split(".")
    prefix = "*." + ".".join(labels[1:]) if len(labels) >= 3 and all(labels) else None
    suffix = ".".join(labels[:-1]) + ".*" if len(labels) >= 2 and all(labels) else None
    return prefix, suffix


_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")


def _sni_syntax_problem(name: str) -> str | None:
    """Why ``name`` is not a valid Kong SNI name, or ``None`` when it is."""
    if name == CATCH_ALL_SNI:
        return None
    if not name:
        return "must not be empty"
    if len(name) > 253:
        return "must be at most 253 characters"
    stars = name.count("*")
    if stars > 1:
        return "only one wildcard must be specified"
    labels = name.split(".")
    if stars == 1:
        if not (name.startswith("*") or name.endswith("*")):
            return "wildcard must be leftmost or rightmost character"
        if labels[0] != "*" and labels[-1] != "*":
            # Kong accepts "*example.com" but its lookup never produces such a name.
            return "wildcard must be a whole label, as in '*.example.com' or 'example.*'"
        if len(labels) < 2:
            return "wildcard must be followed or preceded by a domain"
        labels = labels[1:] if labels[0] == "*" else labels[:-1]
    for label in labels:
        if not _LABEL.match(label):
            return f"invalid label {label!r}"
    return None


def check_snis(certs: Sequence[CertificateSpec]) -> list[str]:
    """Report invalid SNI names and names claimed more than once.

    In Kong an SNI is an entity with a unique name that points to one certificate, so a name listed
    twice (across certificates or within one) is a configuration error, not a tie to break. Names
    compare case-insensitively and without a trailing dot, as DNS names do. Each message names the
    certificate(s) by id.
    """
    problems: list[str] = []
    owner: dict[str, str] = {}
    for cert in certs:
        for raw in cert.snis:
            name = normalize_server_name(raw)
            syntax = _sni_syntax_problem(name)
            if syntax is not None:
                problems.append(f"certificate {cert.id!r}: invalid SNI {raw!r}: {syntax}")
                continue
            first = owner.get(name)
            if first is None:
                owner[name] = cert.id
            elif first == cert.id:
                problems.append(f"certificate {cert.id!r}: SNI {raw!r} is listed more than once")
            else:
                problems.append(
                    f"certificate {cert.id!r}: SNI {raw!r} is already used by certificate {first!r}"
                )
    return problems


@dataclass(frozen=True)
class SNITable:
    """Server name → certificate context, in Kong's precedence; built once per snapshot.

    ``contexts`` maps certificate ids to their contexts, so the server (and tests) can see every
    context that may be served.
    """

    by_name: Mapping[str, CertificateContext]
    default: CertificateContext
    contexts: Mapping[str, CertificateContext]

    @property
    def context(self) -> ssl.SSLContext:
        """The listening context: the default certificate's, carrying this table's SNI callback."""
        return self.default

    def select(self, server_name: str | None) -> CertificateContext:
        """Return the context to serve for ``server_name`` (``None`` when no SNI was sent)."""
        if not server_name:
            return self.default
        name = normalize_server_name(server_name)
        found = self.by_name.get(name)
        if found is not None:
            return found
        prefix, suffix = _wildcard_keys(name)
        for key in (prefix, suffix, CATCH_ALL_SNI):
            if key is not None and (found := self.by_name.get(key)) is not None:
                return found
        return self.default

    def sni_callback(
        self, connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext
    ) -> None:
        """``SSLContext.sni_callback``: switch the handshake to the selected certificate.

        Runs inside OpenSSL's ClientHello processing on the event loop, so it must stay a lookup
        and must never raise (an exception here aborts the handshake with an internal error).
        """
        chosen = self.select(server_name)
        if connection.context is not chosen:
            connection.context = chosen


def selected_certificate(connection: ssl.SSLObject | ssl.SSLSocket | None) -> CertificateSpec | None:
    """The certificate a server-side TLS connection presented, once its handshake is done.

    With asyncio, pass ``transport.get_extra_info("ssl_object")``. Returns ``None`` for a
    connection whose context was not built by this module.
    """
    if connection is None:
        return None
    context = connection.context
    return context.certificate if isinstance(context, CertificateContext) else None


# --------------------------------------------------------------------------------------------------
# Loading PEM data


def _private_dir_parent() -> str | None:
    """Prefer a memory-backed directory so key material never reaches a disk."""
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK):
        return shm
    return None


@contextlib.contextmanager
def _pem_files(*pems: str) -> Iterator[list[str]]:
    """Write PEM strings to private files for OpenSSL to read, and delete them on exit.

    ``mkdtemp`` creates the directory with mode 0700; each file is created exclusively with 0600.
    """
    directory = tempfile.mkdtemp(prefix="forecourt-tls-", dir=_private_dir_parent())
    try:
        paths: list[str] = []
        for index, pem in enumerate(pems):
            path = os.path.join(directory, f"{index}.pem")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(pem)
            paths.append(path)
        yield paths
    finally:
        shutil.rmtree(directory, ignore_errors=True)


class _EncryptedKeyError(Exception):
    """Raised from the password callback: Kong keys carry no passphrase, and OpenSSL must never
    fall back to prompting on the terminal."""


def _refuse_password() -> bytes:
    raise _EncryptedKeyError


_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\s*(.*?)\s*-----END \1-----", re.DOTALL)


def _pem_blocks(pem: str) -> list[tuple[str, str]]:
    """(label, base64 body) of every PEM block in ``pem``."""
    return [(match.group(1), match.group(2)) for match in _PEM_BLOCK.finditer(pem)]


@dataclass(frozen=True)
class _CertInfo:
    """What the stdlib cannot tell about a certificate, read from its DER encoding."""

    not_after: datetime
    key_algorithm: str


def _parse_certificates(pem: str) -> tuple[list[_CertInfo], str | None]:
    """Decode every certificate in ``pem`` (leaf first); return them or a problem description."""
    if not isinstance(pem, str) or not pem.strip():
        return [], "is empty"
    blocks = _pem_blocks(pem)
    if any("PRIVATE KEY" in label for label, _ in blocks):
        return [], "contains a private key; put it in the key field"
    certs = [body for label, body in blocks if label in ("CERTIFICATE", "TRUSTED CERTIFICATE")]
    if not certs:
        return [], "could not parse PEM certificate: no '-----BEGIN CERTIFICATE-----' block found"
    infos: list[_CertInfo] = []
    for position, body in enumerate(certs, start=1):
        where = "" if len(certs) == 1 else f" (certificate {position} of {len(certs)})"
        try:
            der = base64.b64decode("".join(body.split()), validate=True)
        except (binascii.Error, ValueError):
            return [], f"could not parse PEM certificate{where}: invalid base64"
        try:
            infos.append(_read_der_certificate(der))
        except (ValueError, IndexError):
            return [], f"could not parse PEM certificate{where}: not a valid X.509 certificate"
        # Let OpenSSL have the final word on what our small DER reader accepted.
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=der)
        except ssl.SSLError as exc:
            return [], f"could not parse PEM certificate{where}: {_reason(exc)}"
    return infos, None


def _reason(exc: ssl.SSLError) -> str:
    """A short OpenSSL reason without the ``(_ssl.c:NNNN)`` noise."""
    text = exc.reason or (exc.args[1] if len(exc.args) > 1 else str(exc))
    return re.sub(r"\s*\(_ssl\.c:\d+\)$", "", str(text)).lower().replace("_", " ")


def _load_pair(context: ssl.SSLContext, cert: str, key: str) -> str | None:
    """Load one cert/key pair into ``context``; return a ``field: message`` problem or ``None``.

    The certificate is assumed parseable (checked before), so a failure here is about the key.
    """
    if not isinstance(key, str) or not key.strip():
        return "key: is empty"
    labels = [label for label, _ in _pem_blocks(key)]
    if not any(label.endswith("PRIVATE KEY") for label in labels):
        return "key: could not parse PEM private key: no '-----BEGIN ... PRIVATE KEY-----' block found"
    if "ENCRYPTED PRIVATE KEY" in labels or "Proc-Type: 4,ENCRYPTED" in key:
        return "key: encrypted private keys are not supported"
    try:
        with _pem_files(cert, key) as (cert_path, key_path):
            context.load_cert_chain(cert_path, key_path, password=_refuse_password)
    except _EncryptedKeyError:
        return "key: encrypted private keys are not supported"
    except ssl.SSLError as exc:
        # Same key type, different key: KEY_VALUES_MISMATCH. Different key type: OpenSSL stores the
        # key in another slot and then finds no certificate for it.
        if exc.reason in ("KEY_VALUES_MISMATCH", "NO_CERTIFICATE_ASSIGNED"):
            return (
                "key: private key does not match the certificate "
                "(the first certificate in cert must be the leaf)"
            )
        return f"key: could not parse PEM private key: {_reason(exc)}"
    return None


def _pair_problems(
    context: ssl.SSLContext, cert: str, key: str, fields: tuple[str, str], now: datetime | None
) -> tuple[list[str], _CertInfo | None]:
    """Check and load one pair; problems are prefixed with the spec's field names."""
    cert_field, key_field = fields
    infos, problem = _parse_certificates(cert)
    if problem is not None:
        return [f"{cert_field}: {problem}"], None
    leaf = infos[0]
    problems: list[str] = []
    if now is not None and leaf.not_after < now:
        problems.append(f"{cert_field}: certificate expired on {leaf.not_after:%Y-%m-%dT%H:%M:%SZ}")
    # Check in a context of its own first: in a shared one, a key could pass by matching the
    # certificate of the other pair, which OpenSSL keeps in the slot for that key type.
    key_problem = _load_pair(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), cert, key)
    if key_problem is None:
        key_problem = _load_pair(context, cert, key)
    if key_problem is not None:
        problems.append(key_field + key_problem.removeprefix("key"))
    return problems, leaf


def _certificate_problems(spec: CertificateSpec, context: ssl.SSLContext, now: datetime | None) -> list[str]:
    """Load both of ``spec``'s pairs into ``context`` and describe everything that went wrong."""
    problems, leaf = _pair_problems(context, spec.cert, spec.key, ("cert", "key"), now)
    if spec.cert_alt is None and spec.key_alt is None:
        return problems
    if spec.cert_alt is None:
        return [*problems, "cert_alt: is required when key_alt is set"]
    if spec.key_alt is None:
        return [*problems, "key_alt: is required when cert_alt is set"]
    alt_problems, alt_leaf = _pair_problems(
        context, spec.cert_alt, spec.key_alt, ("cert_alt", "key_alt"), now
    )
    problems.extend(alt_problems)
    if leaf is not None and alt_leaf is not None and leaf.key_algorithm == alt_leaf.key_algorithm:
        # OpenSSL keeps one certificate per key type, so the second pair would silently replace
        # the first; Kong rejects this too.
        problems.append(
            "cert_alt: certificate and alternate certificate need different key types "
            f"(e.g. RSA and ECDSA); both are {leaf.key_algorithm}"
        )
    return problems


def validate_certificate(spec: CertificateSpec, now: datetime | None = None) -> list[str]:
    """Return every problem with ``spec``'s certificates and keys, as ``field: message`` strings.

    Checks that each PEM parses, that each key matches its certificate, that an alternate pair is
    complete and of a different key type, and that no leaf certificate has expired (by ``now``,
    default the current time). The pairs are loaded into a throwaway context, exactly as
    ``build_server_context`` will load them, so what passes here also builds.
    """
    moment = now if now is not None else datetime.now(UTC)
    return _certificate_problems(spec, ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), moment)


# --------------------------------------------------------------------------------------------------
# Server contexts


def _new_server_context() -> CertificateContext:
    """A server context with the listener's TLS policy and no certificate yet.

    Every per-certificate context gets the same policy: after the SNI callback swaps contexts,
    OpenSSL takes the certificate, and also some settings such as ALPN, from the new one.
    """
    context = CertificateContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(_SERVER_CIPHERS)
    context.set_alpn_protocols(list(ALPN_PROTOCOLS))
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    return context


def _certificate_context(spec: CertificateSpec) -> CertificateContext:
    context = _new_server_context()
    # Expiry is a check-time warning sign, not a reason to refuse to serve (Kong serves it too).
    problems = _certificate_problems(spec, context, now=None)
    if problems:
        raise TLSConfigError(f"certificate {spec.id!r}: " + "; ".join(problems))
    context.certificate = spec
    return context


def build_sni_table(certs: Sequence[CertificateSpec], default: CertificateSpec | None = None) -> SNITable:
    """Load every certificate into its own context and index the contexts by SNI name.

    ``default`` is served when no name matches and no SNI was sent; without it, the first
    certificate is. Raises ``TLSConfigError`` for an unloadable certificate, an invalid or duplicate
    SNI, or when there is no certificate at all.
    """
    if not certs and default is None:
        raise TLSConfigError("a TLS listener needs at least one certificate")
    sni_problems = check_snis(certs)
    if sni_problems:
        raise TLSConfigError("; ".join(sni_problems))
    contexts: dict[str, CertificateContext] = {}
    by_name: dict[str, CertificateContext] = {}
    for spec in certs:
        if spec.id in contexts:
            raise TLSConfigError(f"certificate {spec.id!r} is listed more than once")
        context = _certificate_context(spec)
        contexts[spec.id] = context
        for name in spec.snis:
            by_name[normalize_server_name(name)] = context
    if default is None:
        default_context = contexts[certs[0].id]
    elif default.id in contexts and contexts[default.id].certificate == default:
        default_context = contexts[default.id]
    else:
        default_context = _certificate_context(default)
    table = SNITable(by_name=by_name, default=default_context, contexts=contexts)
    # The default certificate's context doubles as the listener's; only it needs the callback,
    # because OpenSSL runs the callback of the context a connection starts with.
    default_context.sni_callback = table.sni_callback
    return table


def build_server_context(
    certs: Sequence[CertificateSpec], default: CertificateSpec | None = None
) -> ssl.SSLContext:
    """Build the listening context: TLS 1.2+, Mozilla intermediate ciphers, ALPN ``http/1.1``.

    The returned context serves the default certificate and carries an SNI callback that switches
    each handshake to the certificate chosen by Kong's precedence (see the module docstring). All
    certificate contexts are built here, none per handshake. After a handshake,
    ``selected_certificate(ssl_object)`` tells which certificate was served; a caller that wants
    the whole name → certificate mapping uses ``build_sni_table(...)`` and its ``context``.
    """
    return build_sni_table(certs, default).context


# --------------------------------------------------------------------------------------------------
# Client contexts


def build_client_context(
    verify: bool = True,
    ca_pems: Sequence[str] = (),
    client_cert: CertificateSpec | None = None,
) -> ssl.SSLContext:
    """Build the context for HTTPS connections to upstream services.

    With ``verify`` the upstream's chain must lead to a system CA or one of ``ca_pems`` (Kong's
    ``ca_certificates``) and its certificate must name the host connected to; a CA given here may
    be an intermediate, as in Kong. Without ``verify`` anything is accepted, which is Kong's
    behaviour for services whose ``tls_verify`` is off. ``client_cert`` is presented when the
    upstream asks for one (Kong's service ``client_certificate``).
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(list(ALPN_PROTOCOLS))
    if verify:
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        for index, pem in enumerate(ca_pems):
            _, problem = _parse_certificates(pem)
            if problem is not None:
                raise TLSConfigError(f"ca certificate {index}: {problem}")
            context.load_verify_locations(cadata=pem)
    else:
        # check_hostname must be off before verification can be.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if client_cert is not None:
        problems = _certificate_problems(client_cert, context, now=None)
        if problems:
            raise TLSConfigError(f"client certificate {client_cert.id!r}: " + "; ".join(problems))
    return context


# --------------------------------------------------------------------------------------------------
# A minimal DER reader: just enough of X.509 for expiry and key type, which ``ssl`` does not expose
# for a leaf certificate.

_KEY_ALGORITHMS = {
    "1.2.840.113549.1.1.1": "RSA",
    "1.2.840.113549.1.1.10": "RSA-PSS",
    "1.2.840.10045.2.1": "ECDSA",
    "1.2.840.10040.4.1": "DSA",
    "1.3.101.112": "Ed25519",
    "1.3.101.113": "Ed448",
}

_SEQUENCE = 0x30
_OID = 0x06
_UTC_TIME = 0x17
_GENERALIZED_TIME = 0x18
_EXPLICIT_0 = 0xA0


def _der_element(data: bytes, offset: int) -> tuple[int, int, int]:
    """Return (tag, start of contents, end of contents) of the element at ``offset``."""
    tag = data[offset]
    length = data[offset + 1]
    start = offset + 2
    if length & 0x80:
        size = length & 0x7F
        if not 1 <= size <= 4:
            raise ValueError("unsupported DER length")
        length = int.from_bytes(data[start : start + size], "big")
        start += size
    end = start + length
    if end > len(data):
        raise ValueError("truncated DER")
    return tag, start, end


def _der_children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    children: list[tuple[int, int, int]] = []
    while start < end:
        child = _der_element(data, start)
        children.append(child)
        start = child[2]
    return children


def _der_time(tag: int, value: bytes) -> datetime:
    text = value.decode("ascii")
    if tag == _UTC_TIME:
        # RFC 5280: two-digit years 50-99 are 19xx, 00-49 are 20xx.
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif tag != _GENERALIZED_TIME:
        raise ValueError("not a time")
    return datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)


def _der_oid(value: bytes) -> str:
    first, rest = value[0], value[1:]
    parts = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    number = 0
    for byte in rest:
        number = (number << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(number)
            number = 0
    return ".".join(str(part) for part in parts)


def _read_der_certificate(der: bytes) -> _CertInfo:
    """Read notAfter and the public key algorithm from a DER X.509 certificate."""
    tag, start, end = _der_element(der, 0)
    if tag != _SEQUENCE or end != len(der):
        raise ValueError("not a certificate")
    tbs_tag, tbs_start, tbs_end = _der_element(der, start)
    if tbs_tag != _SEQUENCE:
        raise ValueError("not a certificate")
    fields = _der_children(der, tbs_start, tbs_end)
    if fields and fields[0][0] == _EXPLICIT_0:  # version
        fields = fields[1:]
    # serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo
    if len(fields) < 6 or fields[3][0] != _SEQUENCE or fields[5][0] != _SEQUENCE:
        raise ValueError("not a certificate")
    validity = _der_children(der, fields[3][1], fields[3][2])
    if len(validity) != 2:
        raise ValueError("bad validity")
    after_tag, after_start, after_end = validity[1]
    not_after = _der_time(after_tag, der[after_start:after_end])
    spki = _der_children(der, fields[5][1], fields[5][2])
    algorithm = _der_children(der, spki[0][1], spki[0][2])
    oid_tag, oid_start, oid_end = algorithm[0]
    if oid_tag != _OID:
        raise ValueError("bad key algorithm")
    oid = _der_oid(der[oid_start:oid_end])
    return _CertInfo(not_after=not_after, key_algorithm=_KEY_ALGORITHMS.get(oid, oid))
