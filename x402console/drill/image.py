"""The simulator's Docker image, built locally with no registry.

No registry is reachable where drills run, so nothing can be pulled: the image is `FROM scratch`
with a tiny root skeleton (/tmp, /etc/passwd, ...) and containers bind-mount the host's Python
read-only at the same paths (the venv, the interpreter install it points to, the package source,
/usr and the libraries). The image therefore only works on the host that built it, with the
interpreter that built it; both are recorded in labels so a change of either rebuilds it.
"""

from __future__ import annotations

import io
import os
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IMAGE_TAG = "x402console-sim:local"
# Bump when the skeleton, the default command or the healthcheck changes: ensure_image rebuilds
# any image whose label differs.
IMAGE_VERSION = "1"
LABEL_IMAGE_VERSION = "x402console.image-version"
LABEL_PYTHON = "x402console.python"
SIM_MODULE = "x402console.drill.sim"
DEFAULT_PORT = 8080
HEALTH_INTERVAL_S = 30.0
HEALTH_TIMEOUT_S = 10.0
HEALTH_RETRIES = 3
HEALTH_START_PERIOD_S = 5.0

# Host paths a Python process needs besides the interpreter and the package: the C library and
# its loader, shared libraries (ssl, sqlite, ffi...), CA certificates and the time zone.
_SYSTEM_PATHS = ("/usr", "/lib", "/lib64", "/bin", "/etc/ssl", "/etc/localtime")

_NSSWITCH = "passwd: files\ngroup: files\nhosts: files dns\n"
_HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
_GROUP = "root:x:0:\nnogroup:x:65534:\n"


class ImageError(RuntimeError):
    """The image could not be built or inspected."""


@dataclass(frozen=True)
class HostMount:
    """One read-only bind of a host path at the same path inside the container."""

    target: str
    source: str  # symlinks resolved: the engine binds what the link points to

    def as_docker(self) -> Any:
        from docker.types import Mount

        return Mount(target=self.target, source=self.source, type="bind", read_only=True)


def package_root() -> Path:
    """The directory holding the x402console package (the checkout, for an editable install)."""
    import x402console

    return Path(x402console.__file__).resolve().parent.parent


def python_executable() -> str:
    # The venv's own path (not the resolved interpreter): only then does Python find pyvenv.cfg
    # and the venv's site-packages, where the editable install's finder lives.
    return os.path.abspath(sys.executable)


def _is_under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def host_mounts() -> list[HostMount]:
    """Read-only binds that let the container run this interpreter, computed from the live one.

    A path already visible through another bind (the venv inside the checkout, a pyenv under
    /usr) is left out, unless a symlink makes it point elsewhere.
    """
    wanted = [
        sys.prefix,
        sys.exec_prefix,
        sys.base_prefix,
        sys.base_exec_prefix,
        os.path.dirname(os.path.realpath(sys.executable)),
        str(package_root()),
        *_SYSTEM_PATHS,
    ]
    kept: list[HostMount] = []
    for raw in sorted({os.path.abspath(p) for p in wanted}, key=lambda p: (p.count("/"), p)):
        if not os.path.exists(raw):  # absent, or a dangling link
            continue
        source = os.path.realpath(raw)
        covered = any(
            _is_under(raw, m.target)
            and source == os.path.normpath(os.path.join(m.source, os.path.relpath(raw, m.target)))
            for m in kept
        )
        if not covered:
            kept.append(HostMount(target=raw, source=source))
    return kept


def health_probe(port: int, timeout_s: float = HEALTH_TIMEOUT_S) -> list[str]:
    """Healthcheck test: the image has no curl, so Python does the `curl -f` of the real one.

    Any answer but 2xx fails it, 429 included: the real prover's limiter covers /health too.
    """
    code = (
        "import sys, urllib.request\n"
        "try:\n"
        f"    urllib.request.urlopen('http://127.0.0.1:{int(port)}/health', timeout={float(timeout_s)})\n"
        "except Exception as exc:\n"
        "    print(exc)\n"
        "    sys.exit(1)\n"
    )
    # -I -S: no user site, no site-packages; the stdlib is all the probe needs, and it starts faster.
    return ["CMD", python_executable(), "-I", "-S", "-c", code]


def _dockerfile(python: str) -> str:
    import json

    default_cmd = [
        python, "-m", SIM_MODULE,
        "--host", "127.0.0.1", "--port", str(DEFAULT_PORT), "--name", "prover-1", "--state-dir", "/tmp",
    ]
    probe = health_probe(DEFAULT_PORT)[1:]
    return (
        "FROM scratch\n"
        "COPY rootfs/ /\n"
        "ENV HOME=/tmp PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 "
        "PATH=/usr/local/bin:/usr/bin:/bin\n"
        "WORKDIR /tmp\n"
        f"EXPOSE {DEFAULT_PORT}\n"
        f"HEALTHCHECK --interval={int(HEALTH_INTERVAL_S)}s --timeout={int(HEALTH_TIMEOUT_S)}s "
        f"--start-period={int(HEALTH_START_PERIOD_S)}s --retries={HEALTH_RETRIES} "
        f"CMD {json.dumps(probe)}\n"
        f"CMD {json.dumps(default_cmd)}\n"
    )


def _context_tar(python: str) -> io.BytesIO:
    buf = io.BytesIO()
    now = time.time()

    def add(name: str, *, data: bytes | None = None, mode: int = 0o644) -> None:
        info = tarfile.TarInfo(name)
        info.mtime = now
        info.uid = info.gid = 0
        if data is None:
            info.type = tarfile.DIRTYPE
            info.mode = mode
            tar.addfile(info)
        else:
            info.size = len(data)
            info.mode = mode
            tar.addfile(info, io.BytesIO(data))

    with tarfile.open(fileobj=buf, mode="w") as tar:
        add("Dockerfile", data=_dockerfile(python).encode())
        add("rootfs", mode=0o755)
        add("rootfs/tmp", mode=0o1777)  # any uid the container runs as may write here
        add("rootfs/etc", mode=0o755)
        add("rootfs/etc/passwd", data=_PASSWD.encode())
        add("rootfs/etc/group", data=_GROUP.encode())
        add("rootfs/etc/hosts", data=_HOSTS.encode())
        add("rootfs/etc/nsswitch.conf", data=_NSSWITCH.encode())
    buf.seek(0)
    return buf


def _wanted_labels(version: str) -> dict[str, str]:
    return {
        LABEL_IMAGE_VERSION: version,
        LABEL_PYTHON: python_executable(),
        "org.opencontainers.image.title": "x402 prover simulator (x402console drill)",
        "org.opencontainers.image.description": "FROM scratch; needs the host's Python bind-mounted read-only",
    }


def image_is_current(client: Any, tag: str = IMAGE_TAG, version: str = IMAGE_VERSION) -> str | None:
    """The id of `tag` when its labels match this version and interpreter, else None."""
    import docker.errors

    try:
        image = client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None
    except docker.errors.APIError as exc:
        raise ImageError(f"cannot inspect image {tag}: {exc}") from exc
    labels = image.labels or {}
    if labels.get(LABEL_IMAGE_VERSION) != version or labels.get(LABEL_PYTHON) != python_executable():
        return None
    return image.id


def build_image(client: Any, tag: str = IMAGE_TAG, version: str = IMAGE_VERSION) -> str:
    """Build `tag` now (no cache, no pull) and return its id; the replaced image is removed."""
    import docker.errors

    try:
        previous = client.images.get(tag).id
    except docker.errors.ImageNotFound:
        previous = None
    except docker.errors.APIError:
        previous = None
    try:
        # nocache: the build is a few files, and a fresh id tells callers (and tests) it happened.
        image, _log = client.images.build(
            fileobj=_context_tar(python_executable()),
            custom_context=True,
            tag=tag,
            labels=_wanted_labels(version),
            rm=True,
            forcerm=True,
            nocache=True,
            pull=False,
        )
    except (docker.errors.BuildError, docker.errors.APIError) as exc:
        raise ImageError(f"building {tag} failed: {exc}") from exc
    if previous and previous != image.id:
        try:
            client.images.remove(previous, noprune=False)
        except docker.errors.APIError:
            pass  # still used by a container, or already gone: leave it
    return image.id


def ensure_image(client: Any, tag: str = IMAGE_TAG, version: str = IMAGE_VERSION) -> str:
    """The id of an up-to-date simulator image, building it only when missing or stale."""
    return image_is_current(client, tag, version) or build_image(client, tag, version)
