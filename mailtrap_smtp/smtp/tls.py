"""Server TLS contexts: TLS 1.2+, forward-secret suites only, RSA and optional ECDSA certificates.

Certificates are reloaded (SIGHUP) by building a new context; `TlsContexts.current` is what new
handshakes use. Listening sockets keep one stable "front" context whose SNI callback (called by
OpenSSL for every ClientHello, with or without a server name) switches the handshake to the
current context, so sessions already established keep theirs and nothing is dropped.
"""

from __future__ import annotations

import logging
import ssl

from ..config import Config

log = logging.getLogger(__name__)

# TLS 1.2: ECDHE key exchange with AEAD ciphers only (forward secrecy). TLS 1.3 suites are all
# forward-secret and are configured separately by OpenSSL.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!DSS:!PSK:!SRP"


def build_context(cfg: Config) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_SINGLE_ECDH_USE
    ctx.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    ctx.load_cert_chain(str(cfg.path(cfg.tls.cert_file)), str(cfg.path(cfg.tls.key_file)))
    if cfg.tls.ecdsa_cert_file:
        # OpenSSL keeps one certificate per key type: RSA and ECDSA live side by side and the
        # handshake picks the one matching the client's signature algorithms.
        ctx.load_cert_chain(str(cfg.path(cfg.tls.ecdsa_cert_file)), str(cfg.path(cfg.tls.ecdsa_key_file)))
    return ctx


class TlsContexts:
    def __init__(self, cfg: Config) -> None:
        self._cfg = cfg
        self.current = build_context(cfg)
        self.front = build_context(cfg)
        self.front.sni_callback = self._select

    def _select(self, sslobj: ssl.SSLObject, _server_name: str | None, _ctx: ssl.SSLContext) -> None:
        if sslobj.context is not self.current:
            sslobj.context = self.current
        return None

    def reload(self) -> None:
        """Build a new context from the files; on error keep serving the old one."""
        try:
            self.current = build_context(self._cfg)
        except (OSError, ssl.SSLError):
            log.exception("TLS reload failed; keeping the previous certificates")
            return
        log.info("TLS certificates reloaded")
