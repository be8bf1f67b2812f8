"""ONVIF over HTTPS: CA-verified, or pinned to a self-signed certificate's fingerprint.

Cameras increasingly answer ONVIF only on HTTPS with a certificate they made
themselves. onvif-zeep-async accepts any certificate silently; we do not:

- ``https`` alone: the certificate must be valid for a trusted CA. A self-signed
  one is refused with an error that shows its SHA-256 fingerprint and how to allow it;
- ``tls_fingerprint``: exactly that certificate (SHA-256 of its DER form, as
  ``openssl x509 -fingerprint -sha256`` prints it, colons optional) is accepted;
- ``tls_trust_self_signed``: trust on first use: the certificate seen first is
  pinned (``TlsPolicy.learned``; the registry stores it as ``tls_fingerprint``),
  and a different one afterwards is refused with an error naming both fingerprints.

Every ONVIF request (the zeep transport, our SOAP client, snapshots) uses
:meth:`TlsPolicy.aiohttp_ssl` / :meth:`TlsPolicy.check_peer`, also for XAddrs that
name ``https`` on a camera reached by plain HTTP.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import re
import ssl
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from gateway.cameras.errors import OnvifError, UnreachableError

log = logging.getLogger(__name__)

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class TlsError(OnvifError):
    """The camera's certificate is not one we may trust; the message says what to do."""


def normalize_fingerprint(text: str) -> str:
    """``AB:CD:…`` or ``abcd…`` → 64 lower-case hex digits; ValueError otherwise."""
    value = re.sub(r"[\s:]", "", text).lower()
    if not _HEX64.match(value):
        raise ValueError("must be a SHA-256 fingerprint: 64 hex digits (colons allowed)")
    return value


def pretty(fp: str) -> str:
    """``ab:cd:…`` upper case, as browsers and openssl show it."""
    return ":".join(fp[i : i + 2] for i in range(0, len(fp), 2)).upper()


def _verifying_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def _unverified_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _server_name(host: str) -> str | None:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host
    return None


@dataclass
class TlsPolicy:
    """How one camera's HTTPS certificates are checked."""

    fingerprint: str | None = None  # pinned SHA-256, normalised hex
    trust_on_first_use: bool = False  # pin the certificate seen first when none is pinned
    learned: str | None = None  # the fingerprint pinned by first use, for the caller to store

    @property
    def pin(self) -> str | None:
        return self.fingerprint or self.learned

    _ssl: tuple[str | None, ssl.SSLContext | aiohttp.Fingerprint] | None = field(
        default=None, repr=False, compare=False
    )

    def aiohttp_ssl(self) -> ssl.SSLContext | aiohttp.Fingerprint:
        """The ``ssl=`` argument for every aiohttp request to the camera.

        The same object each time while the pin stays: aiohttp keys pooled connections
        by it, so keep-alive connections are reused.
        """
        pin = self.pin
        if self._ssl is None or self._ssl[0] != pin:
            made = aiohttp.Fingerprint(bytes.fromhex(pin)) if pin else _verifying_context()
            self._ssl = (pin, made)
        return self._ssl[1]

    async def check_peer(self, label: str, host: str, port: int, timeout: float) -> str:
        """Connect once and apply the policy; returns the certificate's fingerprint.

        Raises :class:`TlsError` with the fingerprint(s) and the way to allow the
        certificate, :class:`UnreachableError` when nothing answers TLS there.
        """
        seen = await _peer(label, host, port, timeout)
        pin = self.pin
        if pin:
            if seen != pin:
                raise mismatch(label, pin, seen)
            return seen
        if self.trust_on_first_use:
            self.learned = seen
            log.info("%s: pinned the HTTPS certificate on first use: SHA-256 %s", label, seen)
            return seen
        try:
            await _handshake(host, port, _verifying_context(), timeout)
        except ssl.SSLCertVerificationError as err:
            raise untrusted(label, host, port, seen, err.verify_message or str(err)) from None
        except (OSError, TimeoutError) as err:
            raise UnreachableError(f"cannot reach {label} over HTTPS: {err}") from None
        return seen


def untrusted(label: str, host: str, port: int | None, seen: str | None, why: str) -> TlsError:
    shown = f"; its SHA-256 fingerprint is {seen}" if seen else ""
    where = f"{host}:{port}" if port is not None else host
    return TlsError(
        f"{label}: the HTTPS certificate of {where} is self-signed or not issued by a "
        f"trusted CA ({why}){shown}. To allow it, set the camera's onvif.tls_fingerprint "
        f"to that fingerprint after checking it on the camera, or onvif.tls_trust_self_signed: "
        f"true to pin the certificate seen first (gateway probe: --tls-fingerprint FP or "
        f"--tls-trust-self-signed)"
    )


def mismatch(label: str, pinned: str, seen: str) -> TlsError:
    return TlsError(
        f"{label}: the camera's HTTPS certificate changed: pinned SHA-256 {pinned}, "
        f"presented {seen}. Refused. If the camera was reset or replaced, check the new "
        f"fingerprint on the camera and set onvif.tls_fingerprint to it"
    )


async def _handshake(host: str, port: int, context: ssl.SSLContext, timeout: float) -> bytes:
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(
            host, port, ssl=context, server_hostname=_server_name(host) or ""
        )
    try:
        sslobj = writer.get_extra_info("ssl_object")
        der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
        return der or b""
    finally:
        writer.close()
        try:
            async with asyncio.timeout(2):
                await writer.wait_closed()
        except (OSError, TimeoutError, ssl.SSLError):
            pass
        del reader


async def _peer(label: str, host: str, port: int, timeout: float) -> str:
    try:
        der = await _handshake(host, port, _unverified_context(), timeout)
    except ssl.SSLError as err:
        raise OnvifError(
            f"{label}: no TLS at {host}:{port} ({err.reason or err}); is HTTPS on for this port?"
        ) from None
    except (OSError, TimeoutError) as err:
        raise UnreachableError(f"cannot reach {label} over HTTPS: {err or 'timed out'}") from None
    if not der:
        raise TlsError(f"{label}: {host}:{port} presented no certificate")
    return hashlib.sha256(der).hexdigest()


async def https_hint(label: str, host: str, port: int, timeout: float) -> TlsError | None:
    """For a plain-HTTP request that failed: an error saying the port answers HTTPS, if it does."""
    try:
        seen = await _peer(label, host, port, timeout)
    except OnvifError:
        return None
    return TlsError(
        f"{label}: {host}:{port} answers HTTPS, not plain HTTP (certificate SHA-256 {seen}). "
        f"Set the camera's onvif.https: true (gateway probe: --https)"
    )


def from_aiohttp(label: str, err: aiohttp.ClientError) -> TlsError | None:
    """Our error for an aiohttp certificate failure during a request, else None."""
    if isinstance(err, aiohttp.ServerFingerprintMismatch):
        return mismatch(label, err.expected.hex(), err.got.hex())
    if isinstance(err, aiohttp.ClientConnectorCertificateError):
        why = getattr(err.certificate_error, "verify_message", "") or str(err.certificate_error)
        return untrusted(label, err.host, err.port, None, why)
    return None


def policy_of(settings: dict[str, Any] | None) -> tuple[bool, TlsPolicy]:
    """(``https``, policy) from a camera's stored ``onvif`` settings."""
    settings = settings or {}
    return bool(settings.get("https")), TlsPolicy(
        fingerprint=settings.get("tls_fingerprint") or None,
        trust_on_first_use=bool(settings.get("tls_trust_self_signed")),
    )
