"""notify.send: send a message through one configured [[notify.hooks]] entry (runbook: "DO notify
security team immediately", Incident 4 step 2 `mail -s "P0 INCIDENT" security@...`).

The delivery itself is x402console.notify.send(); this action adds what the console knows about
the incident in focus (number, severity, title, security flag) and who sends it, and puts the
attempt and its result on the incident's timeline through the registry.
"""

from __future__ import annotations

import shlex
from collections.abc import AsyncIterator, Mapping
from typing import Any

from x402console import notify
from x402console.actions.base import Action, ActionContext, ActionError, Outcome, Plan, PlanStep, Progress, Target
from x402console.settings.model import NotifyHook

__all__ = ["SendNotification", "ACTIONS", "MAX_MESSAGE_CHARS"]

MAX_MESSAGE_CHARS = 4000


def _hooks(ctx: ActionContext) -> dict[str, NotifyHook]:
    return {h.name: h for h in ctx.settings.notify_hooks}


class SendNotification(Action):
    """Send a message through a notify hook.

    changes_state is False, deliberately: read-only mode means "this console does not change the
    x402 system", and a message to people changes nothing there. An observer (read-only by role)
    who sees an incident must still be able to raise the alarm, which is exactly what the runbook
    asks of whoever notices a security problem. Every send is still journaled (who, to which hook,
    the text, the result), so a read-only console cannot page anyone silently.
    """

    id = "notify.send"
    key = "n"
    title = "Send notification"
    help = ("Send a message through a configured notify hook (webhook or command), with the incident's "
            "number, severity and title. Runbook: notify the security team immediately.")
    pane = "incident"
    danger = "safe"
    changes_state = False
    target_kind = "hook"
    param_help = {
        "message": f"the text to send (required, at most {MAX_MESSAGE_CHARS} characters)",
        "severity": "override the severity sent (P0..P3; default: the incident's)",
    }

    def targets(self, ctx: ActionContext) -> list[Target]:
        return [Target("hook", h.name, {"kind": h.kind}) for h in ctx.settings.notify_hooks]

    async def plan(self, ctx: ActionContext, target: Target, params: Mapping[str, Any]) -> Plan:
        hooks = _hooks(ctx)
        hook = hooks.get(target.name)
        if hook is None:
            known = ", ".join(sorted(hooks)) or "none is configured ([[notify.hooks]])"
            raise ActionError(f"no notify hook named {target.name!r} (known: {known})")
        text = params.get("message")
        if not isinstance(text, str) or not text.strip():
            raise ActionError("write the message to send (param 'message')")
        text = text.strip()
        if len(text) > MAX_MESSAGE_CHARS:
            raise ActionError(f"the message is {len(text)} characters; at most {MAX_MESSAGE_CHARS} are sent")
        severity = params.get("severity")
        if severity not in (None, "") and severity not in ("P0", "P1", "P2", "P3"):
            raise ActionError(f"severity must be one of P0, P1, P2, P3, not {severity!r}")
        title = None
        if ctx.journal is not None and ctx.incident_id is not None:
            try:
                incident = await ctx.journal.incident(ctx.incident_id)
                title = incident.title
                severity = severity or incident.severity
            except Exception:
                pass  # the message goes out without them; the operator sees that in the plan
        checked = {
            "message": text,
            "severity": severity or None,
            "title": title,
            "incident_id": ctx.incident_id,
            "security": bool(ctx.incident_security),
        }
        about = f"incident #{ctx.incident_id}" if ctx.incident_id is not None else "no incident in focus"
        if hook.kind == "webhook":
            shown = notify.shown_url(hook.url or "")
            step = PlanStep(
                f"POST the message as JSON ({about}, severity {severity or 'unset'}) to {shown}; "
                f"only a 2xx answer within {hook.timeout_seconds:g} s counts as delivered",
                f"curl -sS -m {hook.timeout_seconds:g} -H 'Content-Type: application/json' --data @message.json '{shown}'",
            )
        else:
            step = PlanStep(
                f"Run {hook.command[0] if hook.command else '?'} with the message on stdin and in X402_MESSAGE "
                f"({about}); exit code 0 within {hook.timeout_seconds:g} s counts as delivered, longer is killed",
                f"printf '%s' \"$X402_MESSAGE\" | timeout {hook.timeout_seconds:g} {shlex.join(hook.command)}",
            )
        warnings = []
        if ctx.incident_id is None:
            warnings.append("No incident is in focus: the message carries no incident number.")
        return self.make_plan(target, [step], checked, warnings=tuple(warnings), cancellable=False)

    async def run(self, ctx: ActionContext, plan: Plan) -> AsyncIterator[Progress | Outcome]:  # type: ignore[override]
        hook = _hooks(ctx).get(plan.target.name)
        if hook is None:
            yield Outcome("failed", f"notify hook {plan.target.name!r} is no longer configured; nothing was sent")
            return
        p = plan.params
        message = notify.Message(
            text=str(p["message"]),
            incident_id=p.get("incident_id"),
            severity=p.get("severity"),
            title=p.get("title"),
            environment=ctx.settings.environment.name,
            security=bool(p.get("security")),
            sender=str(ctx.actor),
        )
        yield Progress(f"Sending through {hook.kind} hook {hook.name} ...")
        result = await notify.send(hook, message, http=ctx.http)
        yield Outcome("succeeded" if result.ok else "failed", result.summary, result.as_dict())


ACTIONS = (SendNotification,)
