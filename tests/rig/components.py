"""Finding real components, and the skip-or-fail rule.

Locally a test whose component is missing skips with the reason. Under CI=true that is a
failure: CI provisions every component, so a missing one means the set-up broke.
"""

from __future__ import annotations

import os
import shutil
import socket

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(component: str, reason: str) -> None:
    """Skip (locally) or fail (CI) because `component` is unavailable."""
    msg = f"{component} unavailable: {reason}"
    if IN_CI:
        pytest.fail(f"CI=true and {msg}", pytrace=False)
    pytest.skip(msg)


def require_binary(name: str, *candidates: str) -> str:
    for c in (name, *candidates):
        path = shutil.which(c) or (c if os.path.isabs(c) and os.access(c, os.X_OK) else None)
        if path:
            return path
    missing(name, f"no `{name}` binary on PATH (Debian package provides it)")
    raise AssertionError("unreachable")


def docker_client():
    """A connected docker SDK client, or skip/fail."""
    try:
        import docker
    except ImportError as exc:  # pragma: no cover - dependency of the package
        missing("docker", f"docker SDK not importable: {exc}")
    try:
        client = docker.from_env(timeout=10)
        client.ping()
        return client
    except Exception as exc:
        missing("docker", f"no Docker engine answers: {exc}")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
