"""Whether to download, and running a download so that network trouble reads as missing data."""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager

from ..errors import DataMissingError

DOWNLOAD_TIMEOUT_S = 30.0


def offline_by_env() -> bool:
    return os.environ.get("NLKIT_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def downloads_allowed(download: bool | None) -> bool:
    """`download=None` means: download unless NLKIT_OFFLINE=1."""
    return (not offline_by_env()) if download is None else bool(download)


def why_no_download(download: bool | None) -> str:
    return "NLKIT_OFFLINE=1 is set" if download is None else "download=False"


@contextmanager
def _socket_timeout(seconds: float):
    # torchvision's urllib calls take no timeout argument; without one a dead network hangs forever
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def run_download(fetch, not_found: str) -> None:
    """Call `fetch()`; a network or integrity failure becomes DataMissingError(`not_found` + cause)."""
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            fetch()
    except (OSError, RuntimeError) as err:  # URLError, timeouts and torchvision's md5 errors
        raise DataMissingError(f"{not_found}\nThe download failed: {type(err).__name__}: {err}") from err
