"""What every remediation action is made of: its target, its plan, its progress and its outcome.

An action never changes anything in `plan()`: it validates, looks around (cheap, read-only I/O)
and describes the exact steps, with the equivalent shell command for each, so the operator
confirms what will really happen. `run()` then does those steps and reports as it goes. The
registry (registry.py) is the one place that decides whether an action may run at all.
"""

from __future__ import annotations

import asyncio
import dataclasses
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    import docker
    import httpx

    from x402console.journal import Actor, Journal
    from x402console.settings.model import Settings

Danger = Literal["safe", "disruptive", "destructive"]
DANGERS: tuple[str, ...] = ("safe", "disruptive", "destructive")
TARGET_KINDS: tuple[str, ...] = ("replica", "service", "database", "backup", "ip", "file", "environment", "hook")
PANES: tuple[str, ...] = ("health", "metrics", "logs", "database", "incident", "abuse", "circuits")


class ActionError(Exception):
    """A clear, operator-facing message: bad input, or a reason the action cannot go ahead."""


class Refused(ActionError):
    """The request was refused by a safety rule (read-only, security guard, target busy, a
    precondition such as running writers). The registry records refusals in the journal."""


class NeedsConfirmation(Refused):
    """Refused unless the operator types `confirm_text` into the parameter `param`: a risky
    block (loopback, one's own address) or the security guard's override. The UI asks for the
    text and prepares the action again with it."""

    def __init__(self, message: str, confirm_text: str, param: str = "confirm") -> None:
        super().__init__(message)
        self.confirm_text = confirm_text
        self.param = param


@dataclass(frozen=True)
class Target:
    """What an action works on. Identity is (kind, name); `detail` only helps reach it."""

    kind: str  # one of TARGET_KINDS
    name: str  # "prover-1", "prover", "/abs/proofs.db", "203.0.113.7", ...
    detail: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.name)

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass(frozen=True)
class PlanStep:
    description: str  # plain words
    command: str | None = None  # the exact equivalent command, e.g. "docker restart x402-prover-1"


@dataclass(frozen=True)
class Plan:
    action_id: str
    title: str
    target: Target
    danger: Danger
    steps: tuple[PlanStep, ...]
    params: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    confirm_text: str | None = None  # what the operator must type (destructive: the target's name)
    cancellable: bool = True  # safe to cancel mid-way
    changes_state: bool = True

    def with_warning(self, text: str) -> Plan:
        return dataclasses.replace(self, warnings=(*self.warnings, text))


@dataclass(frozen=True)
class Progress:
    message: str
    fraction: float | None = None  # 0..1 when known


@dataclass(frozen=True)
class Outcome:
    status: Literal["succeeded", "failed", "cancelled"]
    summary: str
    details: Mapping[str, Any] = field(default_factory=dict)
    artifacts: tuple[str, ...] = ()  # absolute paths of files written


@dataclass
class ActionContext:
    """Everything an action may use, built by the caller (the console, a test).

    Make one per execution (or call `fresh()`): `cancel` is set to cancel *this* run, and an
    event shared between two runs would cancel both.
    """

    settings: Settings
    journal: Journal | None = None
    incident_id: int | None = None
    incident_security: bool = False
    read_only: bool = False
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    drill_runtime: Path | None = None  # the drill's runtime.json (process-mode replicas' argv, pids)
    actor_override: Actor | None = None  # who acts, when there is no journal to say so
    _docker: dict[str, Any] = field(default_factory=dict, repr=False)
    _http: Any = field(default=None, repr=False)

    @property
    def is_read_only(self) -> bool:
        """Read-only by flag or by configuration; either one is enough to refuse changes."""
        return bool(self.read_only or self.settings.environment.read_only)

    @property
    def actor(self) -> Actor:
        if self.actor_override is not None:
            return self.actor_override
        if self.journal is not None:
            return self.journal.actor
        from x402console.journal import current_actor

        return current_actor()

    def docker(self, host_name: str | None = None) -> docker.DockerClient:
        """The Docker client for a [[docker.hosts]] entry (the first one when no name), connected
        on first use. Raises ActionError when there is no such host or it cannot be reached."""
        hosts = self.settings.docker_hosts
        if not hosts:
            raise ActionError("no Docker host is configured ([[docker.hosts]] is empty)")
        if host_name is None:
            host = hosts[0]
        else:
            found = [h for h in hosts if h.name == host_name]
            if not found:
                names = ", ".join(h.name for h in hosts)
                raise ActionError(f"no Docker host named {host_name!r} in the configuration (known: {names})")
            host = found[0]
        client = self._docker.get(host.name)
        if client is None:
            from x402console.sources.docker_source import DockerConnectError, connect

            try:
                client = connect(host)
            except DockerConnectError as exc:
                raise ActionError(f"Docker host {host.name} ({host.url}): {exc}") from None
            self._docker[host.name] = client
        return client

    @property
    def http(self) -> httpx.AsyncClient:
        """One HTTP client for the context; never reads proxy settings from the environment,
        because every URL the console calls is one the configuration names."""
        if self._http is None:
            import httpx

            self._http = httpx.AsyncClient(trust_env=False, timeout=self.settings.prover.health_timeout_seconds)
        return self._http

    def fresh(self) -> ActionContext:
        """The same context with its own cancel event, sharing the (lazily made) clients."""
        return dataclasses.replace(self, cancel=asyncio.Event(), _docker=self._docker, _http=self._http)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        for client in self._docker.values():
            try:
                client.close()
            except Exception:
                pass
        self._docker.clear()


class Action(ABC):
    """One remediation action. Subclasses set the class attributes and the three methods."""

    id: ClassVar[str]  # "replica.restart", "db.integrity_check", ...
    key: ClassVar[str]  # default key in its pane
    title: ClassVar[str]
    help: ClassVar[str]
    pane: ClassVar[str]  # one of PANES
    danger: ClassVar[Danger]
    changes_state: ClassVar[bool]
    target_kind: ClassVar[str]
    # Parameter name -> what it means; the UI asks for these. Optional.
    param_help: ClassVar[Mapping[str, str]] = {}
    # Set on actions whose success counts as "evidence preserved" for the security guard.
    preserves_evidence: ClassVar[bool] = False
    # Set on actions that restart/recreate/stop provers: refused in a security incident until
    # evidence is preserved. The registry also recognises these verbs in ids of replica/service
    # actions, so an action cannot slip past by forgetting the flag.
    security_guarded: ClassVar[bool] = False

    def targets(self, ctx: ActionContext) -> list[Target]:
        """Choices offered to the operator (may do cheap I/O)."""
        return []

    @abstractmethod
    async def plan(self, ctx: ActionContext, target: Target, params: Mapping[str, Any]) -> Plan:
        """Validate params and describe the exact steps; raise ActionError with a clear message."""

    @abstractmethod
    def run(self, ctx: ActionContext, plan: Plan) -> AsyncIterator[Progress | Outcome]:
        """Yield Progress..., end with one Outcome; honour ctx.cancel when plan.cancellable.

        Implement as `async def run(...)` containing `yield`.
        """

    def make_plan(
        self,
        target: Target,
        steps: tuple[PlanStep, ...] | list[PlanStep],
        params: Mapping[str, Any] | None = None,
        **kw: Any,
    ) -> Plan:
        """A Plan carrying this action's id, title, danger and changes_state."""
        kw.setdefault("danger", self.danger)
        kw.setdefault("changes_state", self.changes_state)
        return Plan(
            action_id=self.id, title=self.title, target=target, steps=tuple(steps), params=dict(params or {}), **kw
        )
