"""Notification hooks against a real HTTP server on 127.0.0.1 and real commands, and the
notify.send action through the registry with a real journal."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.rig.components import free_port
from x402console.actions.base import ActionContext, ActionError, Target
from x402console.actions.registry import default_registry
from x402console.journal import Journal
from x402console.notify import Message, send, shown_url
from x402console.settings.model import NotifyHook, Settings
from x402console.sources.process_source import read_proc

pytestmark = pytest.mark.timeout(60)


class HookServer:
    """A webhook receiver: records each request; answers with `status`/`body` after `delay`."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 200
        self.body = b'{"ok":true}'
        self.delay = 0.0
        self.headers: dict[str, str] = {}
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", "0"))
                server.requests.append({"path": self.path, "headers": dict(self.headers),
                                        "body": self.rfile.read(length)})
                if server.delay:
                    server.release.wait(server.delay)
                self.send_response(server.status)
                for k, v in server.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(server.body)))
                self.end_headers()
                self.wfile.write(server.body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str = "/hooks/T000/secret-part") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def hook_server() -> Iterator[HookServer]:
    s = HookServer()
    s.thread.start()
    try:
        yield s
    finally:
        s.release.set()
        s.httpd.shutdown()
        s.httpd.server_close()
        s.thread.join(5)


MESSAGE = Message("CRITICAL: Invalid proofs detected", incident_id=7, severity="P0", title="invalid proofs",
                  environment="drill", security=True, sender="alice@ops", extra={"tier": "on-call engineer"})


async def test_webhook_delivers_json(hook_server: HookServer) -> None:
    hook = NotifyHook("security", "webhook", url=hook_server.url(), timeout_seconds=5)
    result = await send(hook, MESSAGE)
    assert result.ok and result.status_code == 200, result
    (req,) = hook_server.requests
    assert req["path"] == "/hooks/T000/secret-part"
    assert req["headers"]["Content-Type"] == "application/json"
    payload = json.loads(req["body"])
    assert payload["text"] == MESSAGE.text and payload["incident"] == 7 and payload["severity"] == "P0"
    assert payload["title"] == "invalid proofs" and payload["security"] is True and payload["tier"] == "on-call engineer"
    assert payload["sent_at"].endswith("Z")
    assert "secret-part" not in result.summary, "the webhook's path is its secret: never shown"


async def test_webhook_http_error_is_a_failure_with_status_and_sanitised_excerpt(hook_server: HookServer) -> None:
    hook_server.status = 500
    hook_server.body = b"upstream \x1b]0;owned\x07broke: database is locked"
    result = await send(NotifyHook("chat", "webhook", url=hook_server.url(), timeout_seconds=5), MESSAGE)
    assert not result.ok and result.status_code == 500
    assert "HTTP 500" in result.summary and "database is locked" in result.excerpt
    assert "\x1b" not in result.summary + result.excerpt
    assert len(hook_server.requests) == 1, "a failed webhook is not retried behind the caller's back"

    hook_server.status, hook_server.body = 302, b""
    hook_server.headers = {"Location": "http://127.0.0.1:1/elsewhere"}
    moved = await send(NotifyHook("chat", "webhook", url=hook_server.url(), timeout_seconds=5), MESSAGE)
    assert not moved.ok and moved.status_code == 302 and "redirects are not followed" in moved.summary
    assert len(hook_server.requests) == 2


async def test_webhook_timeout_refused_and_bad_urls_never_raise(hook_server: HookServer) -> None:
    hook_server.delay = 10.0
    started = time.monotonic()
    slow = await send(NotifyHook("slow", "webhook", url=hook_server.url(), timeout_seconds=0.5), MESSAGE)
    assert not slow.ok and slow.timed_out and "timed out" in slow.summary
    assert time.monotonic() - started < 5, "the hook's timeout bounds the attempt"

    refused = await send(NotifyHook("gone", "webhook", url=f"http://127.0.0.1:{free_port()}/x", timeout_seconds=2), MESSAGE)
    assert not refused.ok and "connection refused" in refused.summary and refused.status_code is None

    for url, words in (("ftp://127.0.0.1/x", "http:// or https://"), ("http:///nohost", "no host"),
                       (None, "no URL"), ("http://127.0.0.1:99999/x", "not valid")):
        bad = await send(NotifyHook("bad", "webhook", url=url), MESSAGE)
        assert not bad.ok and words in bad.summary, (url, bad.summary)
    assert len(hook_server.requests) == 1  # only the slow one reached the server
    assert shown_url("https://user:pw@hooks.example.com:8443/services/T/B/X?token=1") == "https://hooks.example.com:8443/…"


def _py(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


async def test_command_hook_gets_the_message_on_stdin_and_in_env(tmp_path: Path) -> None:
    out = tmp_path / "got.json"
    code = ("import json, os, sys; json.dump({'stdin': sys.stdin.read(), "
            "'env': {k: v for k, v in os.environ.items() if k.startswith('X402_')}}, open(sys.argv[1], 'w'))")
    hook = NotifyHook("pager", "command", command=(*_py(code), str(out)), timeout_seconds=10)
    result = await send(hook, MESSAGE)
    assert result.ok and result.exit_code == 0, result
    got = json.loads(out.read_text())
    assert got["stdin"] == MESSAGE.text
    env = got["env"]
    assert env["X402_MESSAGE"] == MESSAGE.text and env["X402_INCIDENT"] == "7" and env["X402_SEVERITY"] == "P0"
    assert env["X402_SECURITY"] == "1" and env["X402_HOOK"] == "pager"
    assert json.loads(env["X402_MESSAGE_JSON"])["title"] == "invalid proofs"


async def test_command_hook_failures_are_reported_not_raised(tmp_path: Path) -> None:
    failing = NotifyHook("mail", "command", command=_py(
        "import sys; sys.stdin.read(); print('mail: cannot send message: \\x1b[31mProcess exited\\x1b[0m'); sys.exit(3)"),
        timeout_seconds=10)
    result = await send(failing, MESSAGE)
    assert not result.ok and result.exit_code == 3
    assert "exited with code 3" in result.summary and "cannot send message" in result.excerpt
    assert "\x1b" not in result.summary

    pid_file = tmp_path / "pid"
    stuck = NotifyHook("stuck", "command", command=_py(
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"), timeout_seconds=1.0)
    started = time.monotonic()
    result = await send(stuck, MESSAGE)
    assert not result.ok and result.timed_out and "killed" in result.summary
    assert time.monotonic() - started < 10
    pid = int(pid_file.read_text())
    proc = read_proc(pid)
    assert proc is None or proc.state == "Z", "the stuck command must not outlive the attempt"

    missing = await send(NotifyHook("nope", "command", command=("/nonexistent/notify-tool",)), MESSAGE)
    assert not missing.ok and "not found" in missing.summary and missing.exit_code is None


# --------------------------------------------------------------------------- the action


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    j = await Journal.open(tmp_path / "journal.db")
    try:
        yield j
    finally:
        await j.close()


async def test_notify_action_sends_incident_details_and_is_journaled(hook_server: HookServer, journal: Journal) -> None:
    settings = Settings(notify_hooks=(NotifyHook("security", "webhook", url=hook_server.url(), timeout_seconds=5),))
    registry = default_registry()
    incident = await journal.declare_incident("invalid proofs on prover-2", "P0", journal.actor, security=True)
    # an observer's read-only console may still raise the alarm
    ctx = ActionContext(settings=settings, journal=journal, incident_id=incident.id, incident_security=True,
                        read_only=True)
    try:
        (target,) = registry.get("notify.send").targets(ctx)
        assert target == Target("hook", "security")
        with pytest.raises(ActionError, match="message"):
            await registry.prepare("notify.send", ctx, target, {"message": "  "})
        with pytest.raises(ActionError, match="no notify hook named 'pager'"):
            await registry.prepare("notify.send", ctx, Target("hook", "pager"), {"message": "x"})
        plan = await registry.prepare("notify.send", ctx, target, {"message": "CRITICAL: Invalid proofs detected"})
        assert "secret-part" not in " ".join(f"{s.description} {s.command}" for s in plan.steps)
        outcome = await registry.execute(plan, ctx)
        assert outcome.status == "succeeded", outcome.summary
        payload = json.loads(hook_server.requests[-1]["body"])
        assert (payload["incident"], payload["severity"], payload["title"]) == (incident.id, "P0", "invalid proofs on prover-2")
        assert payload["sender"] == str(journal.actor) and payload["security"] is True

        hook_server.status = 503
        failed = await registry.execute(await registry.prepare("notify.send", ctx.fresh(), target,
                                                               {"message": "second try", "severity": "P1"}), ctx.fresh())
        assert failed.status == "failed" and failed.details["status_code"] == 503
        assert json.loads(hook_server.requests[-1]["body"])["severity"] == "P1"
    finally:
        await ctx.aclose()
    records = [r for r in await journal.actions(incident.id) if r.action_id == "notify.send"]
    assert [r.outcome for r in records] == ["succeeded", "failed"]
    assert records[0].detail["params"]["message"] == "CRITICAL: Invalid proofs detected"
    assert records[1].detail["details"]["status_code"] == 503
    assert os.environ.get("X402_MESSAGE") is None  # the console's own environment is untouched
