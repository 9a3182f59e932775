"""HTTPS for the gateway itself (deployments without an ingress in front).

The certificate and key are PEM files (``INGEST_TLS_CERT_FILE`` /
``INGEST_TLS_KEY_FILE``), typically a mounted Secret that cert-manager renews.
They are watched on a timer and loaded again into the *same* SSLContext when
they change: connections made afterwards get the new certificate, open ones
keep theirs, and nothing restarts. A half-written or mismatched pair is not
taken: the certificate served so far stays, and the next check tries again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl

from services.shared.env import SettingError

log = logging.getLogger("replaypipe.ingest.tls")

FileStamp = tuple[tuple[int, int, int], ...]


class ReloadingCertificate:
    """A server TLS context holding the certificate of ``cert_file`` and ``key_file``."""

    def __init__(self, cert_file: str, key_file: str) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        # Python's server defaults: TLS 1.2 or newer, the library's cipher choice.
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._stamp = self._file_stamp()
        try:
            self.context.load_cert_chain(cert_file, key_file)
        except (OSError, ssl.SSLError) as exc:
            raise SettingError(
                f"INGEST_TLS_CERT_FILE/INGEST_TLS_KEY_FILE: cannot load {cert_file} with"
                f" {key_file} ({_reason(exc)})"
            ) from None

    def reload_if_changed(self) -> bool:
        """Load the files again if they changed since the last load; True if reloaded."""
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return False
        try:
            self.context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            # Possibly mid-rotation (the certificate written, the key not yet).
            log.warning(
                "TLS certificate files changed but do not load; serving the previous one",
                extra={"reason": _reason(exc)},
            )
            return False
        self._stamp = stamp
        log.info("TLS certificate reloaded")
        return True

    async def watch(self, interval_s: float) -> None:
        """Check the files every ``interval_s`` until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            self.reload_if_changed()

    def _file_stamp(self) -> FileStamp:
        # A Secret volume swaps a symlink: stat follows it, so the inode changes too.
        stamps = []
        for path in (self.cert_file, self.key_file):
            try:
                st = os.stat(path)
            except OSError:
                stamps.append((0, 0, 0))
                continue
            stamps.append((st.st_mtime_ns, st.st_size, st.st_ino))
        return tuple(stamps)


def _reason(exc: OSError | ssl.SSLError) -> str:
    return exc.strerror or getattr(exc, "reason", None) or type(exc).__name__
