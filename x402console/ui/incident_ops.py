"""The incident lifecycle, live severity and matching, escalation clocks and observation events.

A mixin of the console app, kept apart from the panes' plumbing. Everything that changes state
goes through the journal first and is shown only once committed (the journal poll redraws);
what several consoles may all see at once (a replica going down, an escalation step falling
due) is recorded with a key, once, whichever console sees it first.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

ASSESS_INTERVAL = 5.0  # seconds between severity/matching passes over the store (a log window count costs)
ESCALATION_INTERVAL = 5.0
# proofs.db quick check and verification key hash: cheap, read-only, bounded (3 s), but not
# something to do every refresh.
CHECKS_INTERVAL = 60.0
# The same observation (rule and subject) is not recorded again within this time, so a
# flapping signal or a second console does not flood the timeline.
OBSERVATION_REPEAT_SECONDS = 600
ROLES = ("commander", "scribe", "observer")


class IncidentOps:
    """Mixed into ConsoleApp: uses its journal, store, settings, notify, push_screen, _q."""

    role: str = "commander"
    assessment: Any = None
    matches: list = []

    # ------------------------------------------------------------------ set-up
    def _init_incident_ops(self, role: str | None) -> None:
        if role is None:
            role = "observer" if self.read_only else "commander"
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        self.role = role
        if role == "observer":
            self.read_only = True  # an observer changes nothing, at the registry too
        self.assessment = None
        self.matches = []
        self._active_observations: set[str] = set()
        self._escalation_text = ""
        self._engine = None
        self._runbook = None
        # Results of the last database and key checks run from this console: the severity
        # engine needs them and the store does not observe them.
        self._db_integrity: str | None = None
        self._db_error: str | None = None
        self._vk_status: str | None = None
        self.log_counter: Any = None  # made in _start_incident_ops: its import is not needed for the first frame

    def _start_incident_ops(self) -> None:
        from x402console.status import LogCounter

        prover = self.settings.prover
        self.log_counter = LogCounter(max_window=self.settings.metrics.window_minutes * 60,
                                      monitoring_paths=(prover.health_path, prover.metrics_path))
        self.set_interval(ASSESS_INTERVAL, self._assess_tick)
        self.set_timer(3.0, self._checks_tick)
        self.set_interval(CHECKS_INTERVAL, self._checks_tick)
        # Every console shows the clocks; only one that may record pages (see _escalation_tick).
        self.set_interval(ESCALATION_INTERVAL, self._escalation_tick)

    @property
    def may_record(self) -> bool:
        """Notes, checklist ticks, timeline: commander and scribe."""
        return not self.read_only and self.role in ("commander", "scribe")

    @property
    def may_command(self) -> bool:
        """Lifecycle changes and remediation that changes the system: the commander only."""
        return not self.read_only and self.role == "commander"

    def _refuse(self, what: str, *, command: bool = True) -> bool:
        allowed = self.may_command if command else self.may_record
        if not allowed:
            why = "read-only" if self.read_only else f"role {self.role}"
            self.notify(f"{why}: {what} refused", severity="warning")
            return True
        if self.journal is None:
            self.notify(f"no journal: {what} cannot be recorded ({self.journal_error or 'opening'})",
                        severity="error")
            return True
        return False

    # ------------------------------------------------------------------ lifecycle
    def _focused_or_warn(self):
        inc = self.focused_incident()
        if inc is None:
            self.notify("no incident in focus (D declares one)", severity="warning")
        return inc

    async def _journal_call(self, what: str, coro) -> Any:
        try:
            result = await coro
        except Exception as exc:  # InvalidTransition and friends: say it, change nothing
            self.notify(f"{what}: {exc}", severity="error", timeout=8)
            return None
        await self._reload_incidents()
        return result

    def action_change_severity(self) -> None:
        if self._refuse("changing severity"):
            return
        inc = self._focused_or_warn()
        if inc is None:
            return
        suggested, reasons = None, ""
        if self.assessment is not None and self.assessment.level:
            suggested = self.assessment.level
            reasons = "\n".join(f"- {r.text}" for r in self.assessment.reasons[:4])

        async def chosen(result: tuple[str, str] | None) -> None:
            if result and self.journal is not None:
                severity, reason = result
                if await self._journal_call("severity", self.journal.set_severity(inc.id, severity, self.journal.actor, reason)):
                    self.notify(f"incident #{inc.id} is now {severity}")

        from x402console.ui.screens.dialogs import SeverityScreen  # dialogs load when first opened, not at start-up

        self.push_screen(SeverityScreen(inc.severity, suggested, reasons), chosen)

    def action_toggle_security(self) -> None:
        if self._refuse("marking a security incident"):
            return
        inc = self._focused_or_warn()
        if inc is None:
            return
        marking = not inc.security
        body = ("While marked, restart, recreate and stop are refused until an evidence bundle is preserved"
                " (runbook: DO NOT restart services immediately)." if marking else
                "The evidence guard on restart, recreate and stop is lifted.")

        async def reason(text: str | None) -> None:
            if text and self.journal is not None:
                await self._journal_call("security", self.journal.set_security(inc.id, marking, self.journal.actor, text))

        from x402console.ui.screens.dialogs import PromptScreen

        self.push_screen(PromptScreen(f"{'Mark' if marking else 'Unmark'} incident #{inc.id} as a security incident",
                                      body, placeholder="why", confirm_label="Mark" if marking else "Unmark"), reason)

    def action_mitigate(self) -> None:
        self._transition("mitigate", "mitigate")

    def action_reopen(self) -> None:
        if self._refuse("reopening an incident"):
            return
        closed = [i for i in self.incidents if i.status in ("mitigated", "resolved")]
        inc = self.focused_incident()
        if inc is None or inc.status not in ("mitigated", "resolved"):
            inc = closed[-1] if closed else None
        if inc is None:
            self.notify("no mitigated or resolved incident to reopen", severity="warning")
            return

        async def confirmed(ok: bool | None) -> None:
            if ok and self.journal is not None:
                if await self._journal_call("reopen", self.journal.reopen(inc.id, self.journal.actor)):
                    self.focus_incident_id = inc.id
                    await self._reload_incidents()
                    self.notify(f"incident #{inc.id} reopened: its clocks start again")

        from x402console.ui.screens.dialogs import ConfirmScreen

        self.push_screen(ConfirmScreen(f"Reopen incident #{inc.id}?", f"{inc.severity} {inc.title}\nstatus now: {inc.status}",
                                       "Reopen"), confirmed)

    def action_note(self) -> None:
        if self._refuse("adding a note", command=False):
            return
        inc = self.focused_incident()

        async def typed(text: str | None) -> None:
            if text and self.journal is not None:
                await self._journal_call("note", self.journal.add_event(
                    "note", text, self.journal.actor, inc.id if inc else None))

        where = f"incident #{inc.id}" if inc else "the environment's timeline (no incident in focus)"
        from x402console.ui.screens.dialogs import PromptScreen

        self.push_screen(PromptScreen(f"Note on {where}", placeholder="what happened / what you see",
                                      confirm_label="Add"), typed)

    def action_timeline(self) -> None:
        if self.journal is None:
            self.notify(f"no journal: {self.journal_error or 'opening'}", severity="error")
            return
        from x402console.ui.screens.timeline import TimelineScreen

        self.push_screen(TimelineScreen(self.journal, self.focus_incident_id, can_write=self.may_record,
                                        actor=self.journal.actor))

    def action_runbook(self) -> None:
        from x402console.ui.screens.runbook import RunbookScreen

        mode = "process" if any(r.pid_file for r in self.settings.replicas) else "docker"
        inc = self.focused_incident()
        self.push_screen(RunbookScreen(self.assessment, list(self.matches), self._load_runbook(),
                                       self.remediation_registry, mode=mode,
                                       focus_incident=inc.runbook_incident if inc else None))

    def _load_runbook(self):
        if self._runbook is None:
            from x402console.core.runbook import load_runbook

            self._runbook = load_runbook()
        return self._runbook

    async def on_runbook_screen_run_step(self, message) -> None:
        self.run_worker(self._start_action(message.action_id, dict(message.params), None), group="actions",
                        exit_on_error=False)

    async def on_runbook_screen_declare_from_match(self, message) -> None:
        if self._refuse("declaring an incident"):
            return

        async def declared(result: tuple[str, str] | None) -> None:
            if result is None or self.journal is None:
                return
            title, severity = result
            # The runbook's security incidents (invalid proofs) are declared as such, so the
            # evidence guard applies from the first minute.
            security = bool(getattr(self._load_runbook().incident(message.runbook_incident), "security", False))
            inc = await self._journal_call("declare", self.journal.declare_incident(
                title, severity, self.journal.actor, drill=self.is_drill, runbook_incident=message.runbook_incident,
                security=security))
            if inc is not None:
                self.focus_incident_id = inc.id
                await self._reload_incidents()

        from x402console.ui.screens.dialogs import DeclareScreen

        self.push_screen(DeclareScreen(message.severity, message.title), declared)

    def action_postmortem(self) -> None:
        # A resolved incident is no longer in focus, and it is the usual one to write up.
        inc = self.focused_incident() or (self.incidents[-1] if self.incidents else None)
        if inc is None:
            self.notify("no incident to write a post-mortem for", severity="warning")
            return
        if self.journal is None:
            self.notify(f"no journal: {self.journal_error or 'opening'}", severity="error")
            return
        self.run_worker(self._write_postmortem(inc.id), group="postmortem", exit_on_error=False)

    async def _write_postmortem(self, incident_id: int) -> None:
        from pathlib import Path

        from x402console.postmortem import build_postmortem, render_markdown

        try:
            pm = await build_postmortem(self.journal, incident_id, self.settings)
            text = render_markdown(pm)
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            path = Path.cwd() / f"postmortem-{incident_id}-{stamp}.md"
            with open(path, "x", encoding="utf-8") as f:  # never overwrite
                f.write(text)
        except Exception as exc:
            self.notify(f"post-mortem not written: {exc}", severity="error", timeout=10)
            return
        self.notify(f"post-mortem draft written: {path}", timeout=10)

    # ------------------------------------------------------------------ severity and matching
    def _signals(self):
        from x402console.status import signals_from_store

        return signals_from_store(self.store, self.settings, time.time(), logs=self.log_counter,
                                  db_integrity=self._db_integrity, db_error=self._db_error,
                                  vk_status=self._vk_status)

    def _checks_tick(self) -> None:
        self.run_worker(self._run_checks, thread=True, group="checks", exclusive=True, exit_on_error=False)

    def _run_checks(self) -> None:
        """Read-only: quick_check on a read-only connection, sha256 of the two key files."""
        from x402console.status.checks import check_database, compare_vk

        db = self.settings.database.path
        if db.exists():
            result = check_database(db)
            if result.observed:
                self._db_integrity = result.integrity
                self._db_error = result.error if result.integrity != "ok" else None
        circuits = self.settings.circuits
        vk = compare_vk(circuits.verification_key, circuits.trusted_verification_key)
        if vk.observed:
            self._vk_status = vk.status

    def _note_check_outcome(self, action_id: str, outcome: Any) -> None:
        status = getattr(outcome, "status", None)
        if status not in ("succeeded", "failed"):
            return
        details = dict(getattr(outcome, "details", {}) or {})
        if action_id in ("db.quick_check", "db.integrity_check"):
            if status == "succeeded":
                self._db_integrity, self._db_error = "ok", None
            elif "error" in details:  # the file could not even be checked: corrupt or unreadable
                self._db_integrity, self._db_error = None, str(details["error"])
            else:
                self._db_integrity, self._db_error = "failed", None
        elif action_id == "circuits.compare_vk":
            if status == "succeeded":
                self._vk_status = "match"
            else:
                self._vk_status = "missing" if set(details) <= {"current", "trusted"} else "changed"

    async def _assess_tick(self) -> None:
        from x402console.core.matcher import match
        from x402console.core.severity import assess

        try:
            signals = self._signals()
            self.assessment = assess(signals, self.settings.severity, self.settings.targets)
            self.matches = match(signals, thresholds=self.settings.severity)
        except Exception as exc:  # a bug in a rule must not take the console down
            self.assessment, self.matches = None, []
            self.log.error(f"severity pass failed: {exc!r}")
            return
        self._update_runbook_screen()
        if self.may_record and self.journal is not None:
            await self._record_observations()

    def suggestion(self) -> tuple[str, str] | None:
        a = self.assessment
        if a is None or not a.level or not a.reasons:
            return None
        return a.level, a.reasons[0].text

    def _update_runbook_screen(self) -> None:
        try:
            from x402console.ui.screens.runbook import RunbookScreen
        except ImportError:
            return
        for screen in self.screen_stack:
            if isinstance(screen, RunbookScreen):
                screen.update_inputs(self.assessment, list(self.matches))

    async def _record_observations(self) -> None:
        """A threshold crossed, a replica down, an alert firing: on the timeline once, when first
        seen (and again only after it cleared or OBSERVATION_REPEAT_SECONDS passed)."""
        a = self.assessment
        current = {}
        for r in (a.reasons if a is not None else ()):
            key = f"{r.rule_id}:{r.subject or ''}"
            current[key] = r
        new = [k for k in current if k not in self._active_observations]
        self._active_observations = set(current)
        if not new:
            return
        inc = self.focused_incident()
        bucket = int(time.time() // OBSERVATION_REPEAT_SECONDS)
        for key in new:
            r = current[key]
            try:
                await self.journal.add_event_once(
                    "observation", f"{key}:{bucket}", f"{r.level}: {r.text}", self.journal.actor,
                    inc.id if inc else None, {"rule": r.rule_id, "level": r.level, "subject": r.subject,
                                              "value": _plain(r.value)})
            except Exception as exc:
                self.log.error(f"observation not recorded: {exc!r}")
                return

    # ------------------------------------------------------------------ escalation
    def _escalation_engine(self):
        if self._engine is None:
            from x402console.core.escalation import EscalationEngine, EscalationPolicy

            self._engine = EscalationEngine(EscalationPolicy.from_settings(self.settings))
        return self._engine

    async def _escalation_tick(self) -> None:
        if self.journal is None:
            return
        engine = self._escalation_engine()
        focus_text = ""
        for inc in [i for i in self.incidents if i.is_open]:
            try:
                events = await self.journal.events(inc.id)
                timers, steps = engine.evaluate(inc, events)
            except Exception as exc:
                self.log.error(f"escalation pass failed: {exc!r}")
                continue
            if inc.id == self.focus_incident_id:
                focus_text = timers.header_text()
            # An observer or a read-only console writes nothing, pages included: a console that
            # may record (commander or scribe) fires the step.
            if not self.may_record:
                continue
            for step in steps:
                await self._fire_step(inc, step)
        if focus_text != self._escalation_text:
            self._escalation_text = focus_text
            self._header_tick()

    async def _fire_step(self, inc, step) -> None:
        try:
            event = await self.journal.record_escalation(step.key, step.summary, self.journal.actor, inc.id,
                                                         step.details())
        except Exception as exc:
            self.log.error(f"escalation step not recorded: {exc!r}")
            return
        if event is None:
            return  # another console recorded (and paged for) it first
        self.notify(f"escalation: {step.summary}", severity="warning", timeout=10)
        from x402console.notify import Message, send

        hooks = {h.name: h for h in self.settings.notify_hooks}
        for contact in step.contacts:
            hook = hooks.get(contact.hook or "")
            if hook is None:
                await self._note_delivery(inc, step, contact.name, False, "no notify hook configured for this contact")
                continue
            result = await send(hook, Message(step.summary, incident_id=inc.id, severity=inc.severity, title=inc.title,
                                              environment=self.settings.environment.name, security=inc.security,
                                              sender=str(self.journal.actor), extra={"escalation": step.key,
                                                                                 "contact": contact.name}))
            await self._note_delivery(inc, step, contact.name, result.ok, result.summary)

    async def _note_delivery(self, inc, step, contact: str, ok: bool, summary: str) -> None:
        try:
            await self.journal.add_event_once(
                "system", f"{step.key}:notify:{contact}",
                f"escalation to {contact} {'sent' if ok else 'NOT sent'}: {summary}", self.journal.actor, inc.id,
                {"escalation": step.key, "contact": contact, "ok": ok})
        except Exception as exc:
            self.log.error(f"delivery not recorded: {exc!r}")


def _plain(value: Any) -> Any:
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    return str(value)
