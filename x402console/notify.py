"""Sending one message out of the console through a configured [[notify.hooks]] entry.

Two kinds of hook:
- "webhook": an HTTP POST of a JSON object (`Message.payload()`: text, incident, severity, title,
  environment, security, sender, sent_at, plus any extra fields) to the hook's http(s) URL. Only
  a 2xx answer counts as delivered; redirects are not followed (a webhook that moved should be
  reconfigured, not chased), and proxy variables are not read.
- "command": the hook's argv run directly (no shell), with the message text on stdin and in the
  environment (X402_MESSAGE, X402_INCIDENT, X402_SEVERITY, X402_TITLE, X402_ENVIRONMENT,
  X402_SECURITY, X402_HOOK, and the whole payload as JSON in X402_MESSAGE_JSON) on top of the
  console's own environment, so `mail`, `logger` or a site script work as they would from the
  operator's shell. Exit code 0 counts as delivered. On timeout the command's whole process group
  is killed (it runs in its own session), so a stuck `mail` cannot outlive the attempt.

`send()` never raises for a delivery problem (bad URL, refused connection, HTTP 500, timeout,
missing program, non-zero exit): it returns a SendResult that says what happened, because the
callers (the notify.send action, escalation) must record a failed page, not crash on it.
Whatever the remote side answered is kept only as a short sanitised excerpt: it is shown on the
operator's terminal and stored in the journal. A webhook URL is shown without its path and query,
which for chat webhooks are the secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

import httpx

from x402console.settings.model import NotifyHook
from x402console.sources.sanitize import sanitize_line

__all__ = ["Message", "SendResult", "send", "shown_url", "EXCERPT_CHARS"]

EXCERPT_CHARS = 500
# What is read of an answer or of a command's output: enough for an error message, bounded.
_READ_LIMIT = 64 * 1024
# An environment variable is limited to 128 KiB by the kernel (MAX_ARG_STRLEN); the full text
# always goes on stdin.
_ENV_TEXT_LIMIT = 32 * 1024
_KILL_GRACE_S = 2.0


@dataclass(frozen=True)
class Message:
    """What is sent. `extra` adds fields to the webhook JSON (never replacing the fixed ones)."""

    text: str
    incident_id: int | None = None
    severity: str | None = None
    title: str | None = None
    environment: str | None = None
    security: bool = False
    sender: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def payload(self, sent_at: datetime | None = None) -> dict[str, Any]:
        fixed = {
            "text": self.text,
            "incident": self.incident_id,
            "severity": self.severity,
            "title": self.title,
            "environment": self.environment,
            "security": self.security,
            "sender": self.sender,
            "sent_at": (sent_at or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        return {**{str(k): v for k, v in self.extra.items()}, **fixed}


@dataclass(frozen=True)
class SendResult:
    ok: bool
    hook: str
    kind: str
    summary: str  # one line for the operator and the journal
    status_code: int | None = None  # webhook: the HTTP status
    exit_code: int | None = None  # command: the exit status (negative: killed by that signal)
    timed_out: bool = False
    excerpt: str = ""  # sanitised start of the answer body / command output
    error: str | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def shown_url(url: str) -> str:
    """The URL as it may be displayed and journaled: scheme, host and port only."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid URL>"
    if ":" in host:
        host = f"[{host}]"
    rest = "/…" if (parts.path not in ("", "/") or parts.query) else ""
    return f"{parts.scheme}://{host}{port}{rest}"


def _excerpt(raw: bytes) -> str:
    return sanitize_line(raw[:_READ_LIMIT], max_len=EXCERPT_CHARS) if raw else ""


async def send(hook: NotifyHook, message: Message, *, http: httpx.AsyncClient | None = None) -> SendResult:
    """Deliver `message` through `hook`; the result says whether it arrived (never raises for
    a delivery failure; a hook of an unknown kind is a failed result too)."""
    started = time.monotonic()
    try:
        if hook.kind == "webhook":
            result = await _webhook(hook, message, http)
        elif hook.kind == "command":
            result = await _command(hook, message)
        else:
            result = SendResult(False, hook.name, hook.kind, f"hook {hook.name}: unknown kind {hook.kind!r}",
                                error="unknown kind")
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a bug here must still come back as a failed delivery
        result = SendResult(False, hook.name, hook.kind, f"hook {hook.name}: {type(exc).__name__}: {exc}",
                            error=f"{type(exc).__name__}: {exc}")
    return _with_seconds(result, time.monotonic() - started)


def _with_seconds(result: SendResult, seconds: float) -> SendResult:
    return replace(result, seconds=round(seconds, 3))


# --------------------------------------------------------------------------- webhook


def _check_url(url: str | None) -> str | None:
    """What is wrong with a webhook URL, or None."""
    if not url:
        return "no URL is configured"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        return f"the URL is not valid ({exc})"
    if parts.scheme not in ("http", "https"):
        return f"the URL must start with http:// or https:// (got {parts.scheme or 'no scheme'}://)"
    if not parts.hostname:
        return "the URL has no host"
    return None


async def _webhook(hook: NotifyHook, message: Message, http: httpx.AsyncClient | None) -> SendResult:
    from x402console.sources.health import FetchError, fetch_bounded

    problem = _check_url(hook.url)
    if problem:
        return SendResult(False, hook.name, "webhook", f"webhook {hook.name}: {problem}; nothing was sent",
                          error=problem)
    url = str(hook.url)
    where = shown_url(url)
    body = json.dumps(message.payload(), ensure_ascii=False).encode("utf-8")
    own = http is None
    client = http or httpx.AsyncClient(trust_env=False, follow_redirects=False)
    try:
        fetched = await fetch_bounded(
            client, "POST", url, timeout=float(hook.timeout_seconds), limit=_READ_LIMIT, content=body,
            headers={"Content-Type": "application/json", "User-Agent": "x402console-notify"},
        )
    except FetchError as exc:
        return SendResult(False, hook.name, "webhook", f"webhook {hook.name} ({where}): not delivered: {exc}",
                          timed_out=exc.timed_out, error=str(exc))
    finally:
        if own:
            await client.aclose()
    excerpt = _excerpt(fetched.body)
    code = fetched.status_code
    if 200 <= code < 300:
        return SendResult(True, hook.name, "webhook", f"webhook {hook.name} ({where}): delivered (HTTP {code})",
                          status_code=code, excerpt=excerpt)
    why = f"HTTP {code} {fetched.reason}".rstrip()
    if 300 <= code < 400:
        why += " (redirects are not followed; point the hook at the final URL)"
    tail = f": {excerpt}" if excerpt else ""
    return SendResult(False, hook.name, "webhook", f"webhook {hook.name} ({where}): not delivered: {why}{tail}",
                      status_code=code, excerpt=excerpt, error=why)


# --------------------------------------------------------------------------- command


def _command_env(hook: NotifyHook, message: Message, payload: Mapping[str, Any]) -> dict[str, str]:
    env = dict(os.environ)
    text = message.text
    truncated = len(text) > _ENV_TEXT_LIMIT
    env.update({
        "X402_MESSAGE": text[:_ENV_TEXT_LIMIT],
        "X402_MESSAGE_TRUNCATED": "1" if truncated else "0",
        "X402_INCIDENT": "" if message.incident_id is None else str(message.incident_id),
        "X402_SEVERITY": message.severity or "",
        "X402_TITLE": message.title or "",
        "X402_ENVIRONMENT": message.environment or "",
        "X402_SECURITY": "1" if message.security else "0",
        "X402_HOOK": hook.name,
    })
    as_json = json.dumps(payload, ensure_ascii=False)
    env["X402_MESSAGE_JSON"] = as_json if len(as_json) <= _ENV_TEXT_LIMIT * 2 else json.dumps(
        {**payload, "text": text[:_ENV_TEXT_LIMIT]}, ensure_ascii=False)
    # Embedded NULs cannot be passed through the environment at all.
    return {k: v.replace("\0", "") for k, v in env.items()}


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def _read_bounded(stream: asyncio.StreamReader | None) -> bytes:
    if stream is None:
        return b""
    kept = bytearray()
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            return bytes(kept)
        if len(kept) < _READ_LIMIT:
            kept += chunk[: _READ_LIMIT - len(kept)]


async def _command(hook: NotifyHook, message: Message) -> SendResult:
    argv = [str(a) for a in hook.command]
    if not argv:
        return SendResult(False, hook.name, "command", f"command hook {hook.name}: no command is configured",
                          error="no command")
    payload = message.payload()
    name = os.path.basename(argv[0])
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=_command_env(hook, message, payload),
            start_new_session=True,
        )
    except OSError as exc:
        why = "not found" if isinstance(exc, FileNotFoundError) else (exc.strerror or str(exc))
        return SendResult(False, hook.name, "command", f"command hook {hook.name}: cannot run {argv[0]}: {why}",
                          error=why)

    async def talk() -> bytes:
        reader = asyncio.ensure_future(_read_bounded(proc.stdout))
        assert proc.stdin is not None
        try:
            proc.stdin.write(message.text.encode("utf-8", "replace"))
            await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the command did not read its stdin; its exit code still decides
        finally:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                proc.stdin.close()
        out = await reader
        await proc.wait()
        return out

    timeout = float(hook.timeout_seconds)
    job = asyncio.ensure_future(talk())
    try:
        output = await asyncio.wait_for(asyncio.shield(job), timeout)
    except asyncio.TimeoutError:
        _kill_group(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), _KILL_GRACE_S)
        except asyncio.TimeoutError:
            _kill_group(proc.pid, signal.SIGKILL)
            await proc.wait()
        job.cancel()
        with contextlib.suppress(BaseException):
            await job
        why = f"timed out after {timeout:g} s; {name} was killed"
        return SendResult(False, hook.name, "command", f"command hook {hook.name}: not delivered: {why}",
                          exit_code=proc.returncode, timed_out=True, error=why)
    except asyncio.CancelledError:
        _kill_group(proc.pid, signal.SIGKILL)
        job.cancel()
        raise
    code = proc.returncode
    excerpt = _excerpt(output)
    if code == 0:
        return SendResult(True, hook.name, "command", f"command hook {hook.name}: delivered ({name} exited 0)",
                          exit_code=0, excerpt=excerpt)
    why = f"{name} was killed by signal {-code}" if code is not None and code < 0 else f"{name} exited with code {code}"
    tail = f": {excerpt}" if excerpt else ""
    return SendResult(False, hook.name, "command", f"command hook {hook.name}: not delivered: {why}{tail}",
                      exit_code=code, excerpt=excerpt, error=why)
