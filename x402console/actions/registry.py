"""The one registry of remediation actions, and the one choke point every run goes through.

`prepare()` applies the safety rules in a fixed order (read-only, security guard, one running
action per target) before an action even plans, so no screen can forget one. `execute()`
journals the start before the first step and the outcome after the last, so a crash in
between leaves "started" (later "unknown") in the journal, never nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import inspect
import pkgutil
import traceback
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from x402console.actions.base import (
    DANGERS,
    PANES,
    TARGET_KINDS,
    Action,
    ActionContext,
    ActionError,
    Outcome,
    Plan,
    Progress,
    NeedsConfirmation,
    Refused,
    Target,
)
from x402console.journal import JournalError

__all__ = ["Registry", "Refused", "ActionError", "default_registry", "ProgressCallback"]

ProgressCallback = Callable[[Progress], Awaitable[None] | None]

# Verbs that, on a replica or the service, take a prover down or replace it: exactly what the
# runbook forbids before evidence is preserved in a security incident.
GUARDED_VERBS = ("restart", "recreate", "stop", "down", "kill", "scale", "remove")
GUARDED_KINDS = ("replica", "service")
EVIDENCE_PREFIX = "evidence."
# Set in a plan's params by prepare() when the operator overrode the security guard.
SECURITY_OVERRIDE = "security_override"
# Modules of this package that hold machinery, not actions.
_NOT_ACTION_MODULES = {"base", "registry"}


class Registry:
    def __init__(self) -> None:
        self._actions: dict[str, Action] = {}
        # (kind, name) -> action id running on it, in this process.
        self._running: dict[tuple[str, str], str] = {}

    # ------------------------------------------------------------------ catalogue
    def register(self, action: Action) -> Action:
        if isinstance(action, type):
            raise TypeError(f"register an instance of {action.__name__}, not the class")
        problems = check_declaration(action)
        if problems:
            raise ValueError(f"{type(action).__name__}: " + "; ".join(problems))
        if action.id in self._actions:
            raise ValueError(f"action id {action.id!r} is already registered ({type(self._actions[action.id]).__name__})")
        self._actions[action.id] = action
        return action

    def get(self, action_id: str) -> Action:
        try:
            return self._actions[action_id]
        except KeyError:
            raise ActionError(f"no action {action_id!r}; known: {', '.join(sorted(self._actions)) or 'none'}") from None

    def all(self) -> list[Action]:
        return list(self._actions.values())

    def for_pane(self, pane: str) -> list[Action]:
        return [a for a in self._actions.values() if a.pane == pane]

    def key_conflicts(self) -> list[tuple[str, str, list[str]]]:
        """(pane, key, action ids) for every key bound to two actions of one pane."""
        seen: dict[tuple[str, str], list[str]] = {}
        for a in self._actions.values():
            seen.setdefault((a.pane, a.key), []).append(a.id)
        return [(p, k, ids) for (p, k), ids in seen.items() if len(ids) > 1]

    def running(self) -> dict[tuple[str, str], str]:
        return dict(self._running)

    # ------------------------------------------------------------------ safety rules
    async def prepare(
        self, action_id: str, ctx: ActionContext, target: Target, params: Mapping[str, Any] | None = None
    ) -> Plan:
        """The plan to show the operator, or Refused/ActionError. Refusals are journaled."""
        action = self.get(action_id)
        params = dict(params or {})
        if not isinstance(target, Target):
            raise ActionError(f"target must be a Target, got {type(target).__name__}")
        if target.kind != action.target_kind:
            raise ActionError(f"{action.id} works on a {action.target_kind}, not a {target.kind} ({target.name})")
        try:
            if action.changes_state and ctx.is_read_only:
                raise Refused(f"read-only: {action.title} changes {target.name}, and this console is read-only")
            override = await self._security_guard(action, ctx, target, params)
            self._check_free(action, target)
            await self._check_other_consoles(action, ctx, target)
            plan = await action.plan(ctx, target, params)
        except NeedsConfirmation as exc:
            # A risky target's confirmation is a question, not a refusal. The security guard
            # is both: the attempt before evidence was preserved belongs in the record.
            if exc.param == "override":
                await self._record_refusal(action, ctx, target, str(exc))
            raise
        except Refused as exc:
            await self._record_refusal(action, ctx, target, str(exc))
            raise
        except ActionError:
            raise
        except Exception as exc:  # an action's bug, or an OS error it did not expect
            raise ActionError(f"{action.title}: cannot plan on {target.name}: {type(exc).__name__}: {exc}") from exc
        if not isinstance(plan, Plan) or plan.action_id != action.id:
            raise ActionError(f"{action.id}: plan() did not return this action's Plan")
        if plan.changes_state != action.changes_state:
            # The read-only rule above trusted the class attribute; a plan must not disagree.
            raise ActionError(f"{action.id}: plan says changes_state={plan.changes_state}, action says {action.changes_state}")
        if override:
            plan = dataclasses.replace(
                plan,
                params={**plan.params, SECURITY_OVERRIDE: True},
                warnings=(*plan.warnings, f"Security guard overridden: no evidence bundle is recorded for incident "
                          f"#{ctx.incident_id}; this override is written to the incident timeline."),
            )
        return plan

    def _is_guarded(self, action: Action, target: Target) -> bool:
        if action.security_guarded:
            return True
        if target.kind not in GUARDED_KINDS:
            return False
        words = action.id.replace("-", "_").replace(".", "_").split("_")
        return any(verb in words for verb in GUARDED_VERBS)

    async def _security_guard(self, action: Action, ctx: ActionContext, target: Target, params: Mapping[str, Any]) -> bool:
        """True when the guard applied and was overridden (typed target name)."""
        if not ctx.incident_security or not self._is_guarded(action, target):
            return False
        if await self.evidence_recorded(ctx):
            return False
        override = params.get("override")
        where = f"security incident #{ctx.incident_id}" if ctx.incident_id is not None else "a security incident"
        if override in (None, False, ""):
            raise NeedsConfirmation(
                f"{where}: {action.title} on {target.name} is refused until evidence is preserved "
                f"(runbook: DO NOT restart services immediately). Collect the evidence bundle first, "
                f"or override by typing the target's name ({target.name}).",
                target.name, param="override",
            )
        if override != target.name:
            raise Refused(f"{where}: the override needs the target's name typed exactly: {target.name!r}")
        return True

    async def evidence_recorded(self, ctx: ActionContext) -> bool:
        """An evidence-preserving action succeeded for the focused incident."""
        if ctx.journal is None or ctx.incident_id is None:
            return False
        evidence_ids = {a.id for a in self._actions.values() if a.preserves_evidence}
        try:
            records = await ctx.journal.actions(ctx.incident_id)
        except JournalError:
            return False
        return any(
            r.outcome == "succeeded" and (r.action_id in evidence_ids or r.action_id.startswith(EVIDENCE_PREFIX))
            for r in records
        )

    def _check_free(self, action: Action, target: Target) -> None:
        # Only changes are exclusive: a health probe or a memory trend must not hold up a
        # restart (nor the other way round), and looking twice at once harms nothing.
        if not action.changes_state:
            return
        running = self._running.get(target.key)
        if running is not None:
            raise Refused(f"{running} is already running on {target.name}; wait for it to finish (or cancel it)")

    async def _check_other_consoles(self, action: Action, ctx: ActionContext, target: Target) -> None:
        """Consoles sharing the journal: one of them may be running an action on this target."""
        if ctx.journal is None or not action.changes_state:
            return
        try:
            open_records = await ctx.journal.open_actions()
        except JournalError:
            return
        for r in open_records:
            if r.target == target.name and r.origin != ctx.journal.origin:
                raise Refused(
                    f"{r.actor} started {r.action_id} on {target.name} at {r.started_at:%H:%M:%S} UTC "
                    f"from another console and it has not finished"
                )

    async def _record_refusal(self, action: Action, ctx: ActionContext, target: Target, reason: str) -> None:
        if ctx.journal is None:
            return
        try:
            record = await ctx.journal.action_started(action.id, target.name, ctx.actor, ctx.incident_id)
            await ctx.journal.action_finished(record, "refused", {"reason": reason})
        except JournalError:
            # An observer's journal may refuse writes; the refusal itself still stands.
            pass

    # ------------------------------------------------------------------ running
    async def execute(self, plan: Plan, ctx: ActionContext, on_progress: ProgressCallback | None = None) -> Outcome:
        """Run a prepared plan: journal start, stream progress, journal the outcome."""
        action = self.get(plan.action_id)
        target = plan.target
        # The rules are checked again: time passes between showing a plan and confirming it.
        try:
            if plan.changes_state and ctx.is_read_only:
                raise Refused(f"read-only: {plan.title} changes {target.name}, and this console is read-only")
            self._check_free(action, target)
        except Refused as exc:
            await self._record_refusal(action, ctx, target, str(exc))
            raise
        if not plan.changes_state:
            return await self._execute_claimed(action, plan, ctx, on_progress)
        self._running[target.key] = action.id
        try:
            return await self._execute_claimed(action, plan, ctx, on_progress)
        finally:
            self._running.pop(target.key, None)

    async def _execute_claimed(
        self, action: Action, plan: Plan, ctx: ActionContext, on_progress: ProgressCallback | None
    ) -> Outcome:
        record_id: int | None = None
        if ctx.journal is not None:
            try:
                record_id = await ctx.journal.action_started(plan.action_id, plan.target.name, ctx.actor, ctx.incident_id)
            except JournalError as exc:
                # Nothing runs that the journal cannot account for.
                raise ActionError(f"{plan.title} was not run: the journal could not record its start ({exc})") from None
            if plan.params.get(SECURITY_OVERRIDE):
                await ctx.journal.add_event(
                    "note",
                    f"Security guard overridden: {plan.action_id} on {plan.target.name} before evidence was preserved",
                    ctx.actor,
                    ctx.incident_id,
                    {"action_id": plan.action_id, "target": plan.target.name, "record_id": record_id},
                )
        outcome: Outcome | None = None
        try:
            outcome = await self._drive(action, plan, ctx, on_progress)
        except asyncio.CancelledError:
            outcome = Outcome("cancelled", f"{plan.title} interrupted: the console stopped waiting for it mid-way")
            raise
        finally:
            if record_id is not None and outcome is not None:
                await ctx.journal.action_finished(record_id, outcome.status, _detail(plan, outcome))  # type: ignore[union-attr]
        return outcome

    async def _drive(self, action: Action, plan: Plan, ctx: ActionContext, on_progress: ProgressCallback | None) -> Outcome:
        outcome: Outcome | None = None
        steps = action.run(ctx, plan)
        try:
            try:
                async for item in steps:
                    if isinstance(item, Outcome):
                        outcome = item
                        break
                    if isinstance(item, Progress) and on_progress is not None:
                        result = on_progress(item)
                        if inspect.isawaitable(result):
                            await result
            finally:
                # Run the action's own clean-up (closing files, connections) now, not at some
                # later garbage collection.
                closer = getattr(steps, "aclose", None)
                if closer is not None:
                    await closer()
        except ActionError as exc:
            return Outcome("failed", str(exc))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an action's bug must not take the console down
            return Outcome(
                "failed",
                f"{plan.title} failed unexpectedly: {type(exc).__name__}: {exc}",
                {"traceback": traceback.format_exc(limit=8)},
            )
        if outcome is None:
            return Outcome("failed", f"{plan.title} ended without reporting an outcome")
        return outcome


def _detail(plan: Plan, outcome: Outcome) -> dict[str, Any]:
    detail: dict[str, Any] = {
        "summary": outcome.summary,
        "danger": plan.danger,
        "params": _jsonable(plan.params),
    }
    if outcome.details:
        detail["details"] = _jsonable(outcome.details)
    if outcome.artifacts:
        detail["artifacts"] = list(outcome.artifacts)
    return detail


def _jsonable(value: Any) -> Any:
    """What the journal can store: JSON types, anything else as its text."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else str(value)
    return str(value)


def check_declaration(action: Action) -> list[str]:
    """What is wrong with an action's class attributes (empty when it is well declared)."""
    problems: list[str] = []
    for name in ("id", "key", "title", "help", "pane", "danger", "changes_state", "target_kind"):
        if not hasattr(action, name):
            problems.append(f"missing class attribute {name}")
    if problems:
        return problems
    for name in ("id", "key", "title", "help"):
        value = getattr(action, name)
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{name} must be non-empty text")
    if action.pane not in PANES:
        problems.append(f"pane {action.pane!r} is not one of {', '.join(PANES)}")
    if action.danger not in DANGERS:
        problems.append(f"danger {action.danger!r} is not one of {', '.join(DANGERS)}")
    if action.target_kind not in TARGET_KINDS:
        problems.append(f"target_kind {action.target_kind!r} is not one of {', '.join(TARGET_KINDS)}")
    if not isinstance(action.changes_state, bool):
        problems.append("changes_state must be True or False")
    elif not action.changes_state and action.danger != "safe":
        problems.append(f"an action that changes nothing cannot be {action.danger}")
    return problems


def action_modules() -> list[str]:
    """Modules of x402console.actions that may hold actions (present ones only)."""
    import x402console.actions as package

    return sorted(
        f"{package.__name__}.{m.name}"
        for m in pkgutil.iter_modules(package.__path__)
        if m.name not in _NOT_ACTION_MODULES and not m.name.startswith("_")
    )


def actions_in(module: Any) -> list[Action]:
    """A module's actions: its ACTIONS (instances or classes) if it has one, else every concrete
    Action subclass defined in it."""
    declared: Iterable[Any] | None = getattr(module, "ACTIONS", None)
    if declared is None:
        declared = [
            obj
            for obj in vars(module).values()
            if inspect.isclass(obj) and issubclass(obj, Action) and obj.__module__ == module.__name__
            and not inspect.isabstract(obj) and isinstance(getattr(obj, "id", None), str)
        ]
    return [obj() if inspect.isclass(obj) else obj for obj in declared]


def default_registry(modules: Iterable[str] | None = None) -> Registry:
    """Every action of every action module in the package (database, containers, evidence,
    abuse, ... whichever exist)."""
    registry = Registry()
    for name in modules if modules is not None else action_modules():
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # not written (yet) in this build
            raise
        for action in actions_in(module):
            registry.register(action)
    return registry
