"""nginx's deny file (the runbook's /etc/nginx/blocked_ips.conf): read, change, check, reload.

The runbook appends with `echo "deny <IP>;" >> blocked_ips.conf` and reloads. Done that way a
typo reaches `nginx -s reload`, which refuses the new configuration but leaves the broken file in
place for the next restart, when nginx does not start at all. Here the file is replaced
atomically, `nginx -t` checks it before the reload, and any failure puts the previous bytes back
exactly as they were.

Lines the parser does not understand (an `allow`, an include, a typo someone made by hand) are
kept verbatim: this file belongs to the operator, not to the console.

This is a library for the abuse actions (abuse.py); it holds no actions itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import fcntl
import ipaddress
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Wider than this asks for typed confirmation: a /15 is already 131072 IPv4 addresses, and a
# typo in the prefix length is easy to make and hard to notice.
BROAD_V4_PREFIX = 16
BROAD_V6_PREFIX = 32
COMMAND_TIMEOUT_S = 30.0
LOCK_TIMEOUT_S = 10.0
HEADER = "# deny <IP>; lines, one per blocked address (x402console)\n"

_STATEMENT = re.compile(r"deny\s+([^\s;#]+)\s*;")
_DENY_LINE = re.compile(r"^\s*((?:deny\s+[^\s;#]+\s*;\s*)+)(#.*)?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class DenyError(ValueError):
    """An address the operator typed cannot be blocked as given; str() says why and what to type."""


# --------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class Checked:
    """A validated block: the network, and why it is risky enough to need typed confirmation."""

    network: IPNetwork
    broad: str | None = None  # set when the range is very wide (or everything)

    @property
    def text(self) -> str:
        return network_text(self.network)


def network_text(net: IPNetwork) -> str:
    """How a network is written in the deny file: a single address without /32 or /128."""
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return str(net)


def parse_network(text: Any) -> Checked:
    """An IP address or CIDR network the operator typed, or DenyError with a clear message."""
    if not isinstance(text, str):
        raise DenyError(f"give an IP address or a CIDR network as text, not {type(text).__name__}")
    value = text.strip()
    example = "e.g. 203.0.113.7, 198.51.100.0/24 or 2001:db8::/48"
    if not value:
        raise DenyError(f"give the IP address or CIDR network to block ({example})")
    if value.lower() == "all":
        raise DenyError("'all' would deny every client, the console and Prometheus included; to block a range "
                        f"give it as a CIDR network ({example})")
    if "%" in value:
        raise DenyError(f"{value!r}: a scope id (%...) is not allowed in nginx's deny; give the address without it")
    if any(c.isspace() for c in value) or ";" in value or "#" in value:
        raise DenyError(f"{value!r} is not one IP address or CIDR network ({example})")
    if "/" in value:
        addr_text, _, prefix = value.partition("/")
        if not prefix.isdigit():
            raise DenyError(f"{value!r}: the prefix length after / must be a number ({example})")
        try:
            net = ipaddress.ip_network(value, strict=True)
        except ValueError as exc:
            try:
                loose = ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise DenyError(f"{value!r} is not an IP network: {exc} ({example})") from None
            raise DenyError(
                f"{value} has host bits set: the network is {loose} (block that), or block the single address "
                f"{addr_text} without /{prefix}"
            ) from None
    else:
        try:
            addr = ipaddress.ip_address(value)
        except ValueError:
            raise DenyError(f"{value!r} is not an IP address ({example})") from None
        net = ipaddress.ip_network(addr)
    addr = net.network_address
    if isinstance(net, ipaddress.IPv6Network) and net.network_address.ipv4_mapped is not None:
        v4 = net.network_address.ipv4_mapped
        raise DenyError(f"{value} is an IPv4-mapped IPv6 address: nginx sees that client as {v4}; block {v4}")
    if net.prefixlen == net.max_prefixlen and (addr.is_unspecified or addr.is_multicast):
        kind = "the unspecified address" if addr.is_unspecified else "a multicast address"
        raise DenyError(f"{value} is {kind}, never a client's source address")
    broad = None
    if net.prefixlen == 0:
        family = "IPv4" if net.version == 4 else "IPv6"
        broad = f"{net} is every {family} address: every client would be refused"
    elif net.prefixlen < (BROAD_V4_PREFIX if net.version == 4 else BROAD_V6_PREFIX):
        broad = f"{net} is a very wide range ({net.num_addresses:,} addresses)"
    return Checked(net, broad)


# --------------------------------------------------------------------------- the file


@dataclass(frozen=True)
class Entry:
    """One blocked network as the file has it."""

    network: IPNetwork
    line: int  # 1-based
    text: str  # the address as written
    comment: str = ""

    @property
    def shown(self) -> str:
        return network_text(self.network)


@dataclass(frozen=True)
class Line:
    raw: str  # with its line ending
    kind: str  # deny | comment | blank | other
    addresses: tuple[str, ...] = ()  # for deny lines, as written
    comment: str = ""


def _classify(raw: str) -> Line:
    body = raw.rstrip("\r\n")
    stripped = body.strip()
    if not stripped:
        return Line(raw, "blank")
    if stripped.startswith("#"):
        return Line(raw, "comment")
    match = _DENY_LINE.match(body)
    if match is None:
        return Line(raw, "other")
    addresses = tuple(_STATEMENT.findall(match.group(1)))
    for a in addresses:
        try:
            ipaddress.ip_network(a, strict=False)
        except ValueError:
            # `deny all;` or something nginx may not even accept: kept, never rewritten
            return Line(raw, "other")
    return Line(raw, "deny", addresses, (match.group(2) or "").lstrip("#").strip())


@dataclass(frozen=True)
class DenyFile:
    lines: tuple[Line, ...] = ()

    @classmethod
    def parse(cls, text: str) -> DenyFile:
        return cls(tuple(_classify(raw) for raw in text.splitlines(keepends=True)))

    def render(self) -> str:
        return "".join(line.raw for line in self.lines)

    def entries(self) -> list[Entry]:
        out = []
        for i, line in enumerate(self.lines, start=1):
            for a in line.addresses:
                out.append(Entry(ipaddress.ip_network(a, strict=False), i, a, line.comment))
        return out

    def unknown(self) -> list[tuple[int, str]]:
        """(line number, text) of the lines kept verbatim without being understood."""
        return [(i, line.raw.rstrip("\r\n")) for i, line in enumerate(self.lines, start=1) if line.kind == "other"]

    def exact(self, net: IPNetwork) -> list[Entry]:
        return [e for e in self.entries() if e.network == net]

    def covering(self, net: IPNetwork) -> list[Entry]:
        """Entries (other than exact ones) that already block every address of `net`."""
        return [e for e in self.entries()
                if e.network.version == net.version and e.network != net and net.subnet_of(e.network)]  # type: ignore[arg-type]

    def inside(self, net: IPNetwork) -> list[Entry]:
        """Narrower entries that `net` would make redundant."""
        return [e for e in self.entries()
                if e.network.version == net.version and e.network != net and e.network.subnet_of(net)]  # type: ignore[arg-type]

    def with_block(self, net: IPNetwork, comment: str = "") -> DenyFile:
        lines = list(self.lines)
        if lines and not lines[-1].raw.endswith("\n"):
            last = lines[-1]
            lines[-1] = Line(last.raw + "\n", last.kind, last.addresses, last.comment)
        if not lines:
            lines.append(Line(HEADER, "comment"))
        text = f"deny {network_text(net)};"
        comment = one_line(comment)
        if comment:
            text += f"  # {comment}"
        lines.append(_classify(text + "\n"))
        return DenyFile(tuple(lines))

    def without_block(self, net: IPNetwork) -> tuple[DenyFile, list[int]]:
        """The file without every `deny <net>;` (other statements on the same line stay);
        returns the changed line numbers."""
        lines: list[Line] = []
        changed: list[int] = []
        for i, line in enumerate(self.lines, start=1):
            if line.kind != "deny":
                lines.append(line)
                continue
            keep = [a for a in line.addresses if ipaddress.ip_network(a, strict=False) != net]
            if len(keep) == len(line.addresses):
                lines.append(line)
                continue
            changed.append(i)
            if keep:
                ending = line.raw[len(line.raw.rstrip("\r\n")):]
                text = " ".join(f"deny {a};" for a in keep)
                if line.comment:
                    text += f"  # {line.comment}"
                lines.append(_classify(text + ending))
        return DenyFile(tuple(lines)), changed


def one_line(text: str) -> str:
    """Text safe to put in a comment on one line of the file (no newline can end the comment)."""
    return " ".join(_CONTROL.sub(" ", text).split())


def diff(old: str, new: str, path: Path) -> str:
    return "".join(difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), f"{path} (now)", f"{path} (after)", n=1))


def read_text(path: Path) -> tuple[bytes | None, str]:
    """(exact bytes or None when there is no file, text for parsing)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, ""
    return data, data.decode("utf-8", "surrogateescape")


def real_path(path: Path) -> Path:
    """The file behind a symlink: replacing the link itself would cut it from where nginx looks."""
    return Path(os.path.realpath(os.path.abspath(Path(path).expanduser())))


# --------------------------------------------------------------------------- addresses not to block


@dataclass(frozen=True)
class Protected:
    network: IPNetwork
    why: str


LOOPBACK = (
    Protected(ipaddress.ip_network("127.0.0.0/8"), "loopback (this machine's own traffic: the console, Prometheus "
                                                     "and nginx reach the provers over it)"),
    Protected(ipaddress.ip_network("::1/128"), "IPv6 loopback"),
)


def machine_addresses() -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """This machine's own addresses, from the kernel's tables (no external command)."""
    found: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    try:
        previous = ""
        for line in Path("/proc/net/fib_trie").read_text().splitlines():
            if "/32 host LOCAL" in line and previous.strip().startswith("|--"):
                with contextlib.suppress(ValueError):
                    found.add(ipaddress.IPv4Address(previous.strip()[3:].strip()))
            previous = line
    except OSError:
        pass
    try:
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            raw = line.split()[0] if line.split() else ""
            if len(raw) == 32:
                with contextlib.suppress(ValueError):
                    found.add(ipaddress.IPv6Address(int(raw, 16)))
    except OSError:
        pass
    with contextlib.suppress(OSError, UnicodeError):
        for info in socket.getaddrinfo(socket.gethostname(), None):
            with contextlib.suppress(ValueError):
                found.add(ipaddress.ip_address(str(info[4][0]).split("%")[0]))
    return sorted(found, key=lambda a: (a.version, int(a)))


def _url_host(url: str | None) -> str | None:
    if not url:
        return None
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


async def _resolve(host: str, timeout: float = 2.0) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await asyncio.wait_for(asyncio.get_running_loop().getaddrinfo(host, None), timeout)
    except (OSError, asyncio.TimeoutError, UnicodeError):
        return []
    out = []
    for info in infos:
        with contextlib.suppress(ValueError):
            out.append(ipaddress.ip_address(str(info[4][0]).split("%")[0]))
    return out


async def protected_addresses(settings: Any, environ: Mapping[str, str] | None = None) -> list[Protected]:
    """Addresses whose block would cut off the operator, the console or its monitoring."""
    env = os.environ if environ is None else environ
    out = list(LOOPBACK)
    ssh = (env.get("SSH_CONNECTION") or env.get("SSH_CLIENT") or "").split()
    if ssh:
        with contextlib.suppress(ValueError):
            out.append(Protected(ipaddress.ip_network(ssh[0].split("%")[0]),
                                 f"your own address (SSH_CONNECTION: you are logged in from {ssh[0]})"))
    for addr in machine_addresses():
        if not addr.is_loopback:
            out.append(Protected(ipaddress.ip_network(addr), f"an address of this machine ({addr})"))
    named: list[tuple[str | None, str]] = [(_url_host(settings.prometheus.url), "Prometheus")]
    named.append((_url_host(settings.nginx.url), "nginx's public entry point"))
    for host in settings.docker_hosts:
        if host.url.startswith(("tcp://", "ssh://", "http://", "https://")):
            named.append((_url_host(host.url.replace("tcp://", "http://", 1)), f"Docker host {host.name}"))
    for r in settings.replicas:
        named.append((_url_host(r.health_url), f"prover replica {r.name}"))
    wanted = [(h, what) for h, what in named if h]
    # Resolved together: a name that does not resolve costs its timeout once, not once per name.
    resolved = await asyncio.gather(*(_resolve(h) for h, _ in wanted))
    for (host_name, what), addrs in zip(wanted, resolved):
        for addr in addrs:
            if not addr.is_loopback:
                out.append(Protected(ipaddress.ip_network(addr), f"{what} ({host_name})"))
    return out


def hazards(net: IPNetwork, protected: Sequence[Protected]) -> list[str]:
    """Why blocking `net` would hurt us (empty when it would not)."""
    seen: list[str] = []
    for p in protected:
        if p.network.version == net.version and net.overlaps(p.network) and p.why not in seen:  # type: ignore[arg-type]
            seen.append(p.why)
    return seen


# --------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def output(self, limit: int = 2000) -> str:
        text = "\n".join(t.strip() for t in (self.stderr, self.stdout) if t.strip())
        return text[:limit] or f"exit code {self.returncode}, no output"


async def run_command(argv: Sequence[str], timeout: float = COMMAND_TIMEOUT_S) -> CommandResult:
    """Run argv (no shell); a missing binary or a timeout is a result, not an exception."""
    started = time.monotonic()
    args = tuple(str(a) for a in argv)
    try:
        proc = await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    except FileNotFoundError:
        return CommandResult(args, 127, "", f"command not found: {args[0]}", 0.0)
    except PermissionError as exc:
        return CommandResult(args, 126, "", f"cannot run {args[0]}: {exc.strerror or exc}", 0.0)
    except OSError as exc:
        return CommandResult(args, 126, "", f"cannot run {args[0]}: {exc.strerror or exc}", 0.0)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        out, err = await proc.communicate()
        return CommandResult(args, 124, out.decode(errors="replace"),
                             err.decode(errors="replace") + f"\n(killed after {timeout:g} s)", time.monotonic() - started)
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        raise
    return CommandResult(args, proc.returncode if proc.returncode is not None else -1,
                         out.decode(errors="replace"), err.decode(errors="replace"), time.monotonic() - started)


# --------------------------------------------------------------------------- writing


@contextlib.contextmanager
def directory_lock(directory: Path, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Serialise changes to files in `directory` between consoles (flock on the directory itself:
    the file is replaced by rename, so a lock on it would not outlive the first change)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"another process keeps {directory} locked (waited {timeout:g} s)") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, like: os.stat_result | None) -> list[str]:
    """Replace `path` with `data`: temp file in the same directory, fsync, rename, fsync the
    directory. Mode and owner are those of `like` (the file being replaced). Returns notes."""
    notes: list[str] = []
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            mode = (like.st_mode & 0o7777) if like is not None else 0o644
            os.fchmod(f.fileno(), mode)
            if like is not None and (like.st_uid, like.st_gid) != (os.geteuid(), os.getegid()):
                try:
                    os.fchown(f.fileno(), like.st_uid, like.st_gid)
                except PermissionError:
                    notes.append(f"could not keep the owner {like.st_uid}:{like.st_gid} of {path.name} "
                                 f"(not allowed); it is now owned by uid {os.geteuid()}")
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return notes


def restore(path: Path, old: bytes | None, like: os.stat_result | None) -> bool:
    """Put back exactly what was there (or nothing); True when the bytes read back match."""
    if old is None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return not path.exists()
    atomic_write(path, old, like)
    return path.read_bytes() == old


@dataclass
class ApplyReport:
    """What happened to a deny-file change, step by step."""

    ok: bool = False
    changed: bool = False
    restored: bool = False
    restore_verified: bool | None = None
    test: CommandResult | None = None
    reload: CommandResult | None = None
    restore_reload: CommandResult | None = None
    failure: str = ""
    notes: list[str] = field(default_factory=list)

    def details(self) -> dict[str, Any]:
        out: dict[str, Any] = {"changed": self.changed, "restored": self.restored, "notes": list(self.notes)}
        if self.restore_verified is not None:
            out["restore_verified"] = self.restore_verified
        for name in ("test", "reload", "restore_reload"):
            r = getattr(self, name)
            if r is not None:
                out[name] = {"command": " ".join(r.argv), "returncode": r.returncode, "output": r.output()}
        return out


async def apply(path: Path, old: bytes | None, new: bytes, test_command: Sequence[str],
                reload_command: Sequence[str], timeout: float = COMMAND_TIMEOUT_S) -> ApplyReport:
    """Write `new`, `nginx -t`, reload; on any failure put `old` back byte-for-byte.

    The caller holds directory_lock and read `old` under it.
    """
    report = ApplyReport()
    try:
        like = path.stat() if old is not None else None
    except FileNotFoundError:
        like = None
    try:
        report.notes += await asyncio.to_thread(atomic_write, path, new, like)
    except OSError as exc:
        report.failure = f"cannot write {path}: {exc.strerror or exc}; nothing was changed"
        return report
    report.changed = True
    if test_command:
        report.test = await run_command(test_command, timeout)
        if not report.test.ok:
            report.restore_verified = await asyncio.to_thread(restore, path, old, like)
            report.restored = True
            report.failure = (f"nginx rejected the new file ({' '.join(report.test.argv)} failed), so the previous "
                              f"{path.name} was put back unchanged and nginx was not reloaded: {report.test.output()}")
            return report
    else:
        report.notes.append("no [nginx] test_command configured: the file was not checked before the reload")
    if reload_command:
        report.reload = await run_command(reload_command, timeout)
        if not report.reload.ok:
            report.restore_verified = await asyncio.to_thread(restore, path, old, like)
            report.restored = True
            report.restore_reload = await run_command(reload_command, timeout)
            again = ("and nginx was reloaded with it" if report.restore_reload.ok
                     else f"but reloading nginx again failed too: {report.restore_reload.output()}")
            report.failure = (f"reloading nginx failed ({' '.join(report.reload.argv)}: {report.reload.output()}); "
                              f"the previous {path.name} was put back {again}")
            return report
    else:
        report.notes.append("no [nginx] reload_command configured: nginx keeps the old list until it is reloaded")
    report.ok = True
    return report


# --------------------------------------------------------------------------- nginx's own access log


_ACCESS_LOG = re.compile(r"^\s*access_log\s+([^\s;]+)")


def access_log_of(test_command: Sequence[str]) -> Path | None:
    """The access log named in the configuration that test_command checks (`-c FILE`, `-p PREFIX`),
    else nginx's packaged default, when it exists."""
    argv = list(test_command)
    conf: Path | None = None
    prefix: Path | None = None
    for i, a in enumerate(argv[:-1]):
        if a == "-c":
            conf = Path(argv[i + 1])
        elif a == "-p":
            prefix = Path(argv[i + 1])
    candidates: list[Path] = []
    if conf is None:
        conf = Path("/etc/nginx/nginx.conf")
    try:
        for line in conf.read_text(errors="replace").splitlines():
            m = _ACCESS_LOG.match(line)
            if m and m.group(1) != "off":
                p = Path(m.group(1))
                if not p.is_absolute():
                    p = (prefix or conf.parent) / p
                candidates.append(p)
    except OSError:
        pass
    candidates.append(Path("/var/log/nginx/access.log"))
    for c in candidates:
        if c.is_file():
            return c
    return None
