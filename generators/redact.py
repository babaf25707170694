"""Keeping secrets out of logs, errors, stored metadata and chats."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def public_url(url: str) -> str:
    """``url`` as it may be shown or stored: no user name, password, query or fragment
    (``http://user:pass@host:7860/x?key=k`` -> ``http://host:7860/x``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<url>"
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def scrub(text: str, *secrets: str | None) -> str:
    """``text`` with every given secret (a key, a full URL with credentials) replaced."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "<redacted>")
    return text
