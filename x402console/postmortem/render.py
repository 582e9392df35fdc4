"""Render a PostMortem as the runbook's blameless review, in Markdown.

Sections follow seed/INCIDENT_RESPONSE.md "Post-Incident Review" (timeline, root cause, impact,
detection, response, resolution, prevention, action items), then evidence and, for a security
incident, the evidence-before-restart check. What the journal knows is filled in; what only a
person can say is a prompt carrying TODO_MARKER ("TODO(author)").

Deterministic for golden tests: no locale (numbers formatted by hand, no month names), UTC
only, every list in a fixed order, and the only clock read is PostMortem.generated_at.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta, timezone

from x402console.journal.models import SEVERITIES, TimelineEvent
from x402console.journal.timeline_export import md_escape
from x402console.postmortem.model import TODO_MARKER, ActionEntry, EvidenceBundle, PostMortem


def _t(dt: datetime | None, unit: bool = True) -> str:
    if dt is None:
        return "not yet"
    text = dt.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return f"{text} UTC" if unit else text


def duration_text(delta: timedelta | None) -> str:
    """45s, 2m 05s, 1h 02m 03s, 2d 03h 04m; negative with a leading '-'; None -> 'not yet'."""
    if delta is None:
        return "not yet"
    total = int(delta.total_seconds())
    sign = "-" if total < 0 else ""
    s = abs(total)
    if s < 60:
        body = f"{s}s"
    elif s < 3600:
        body = f"{s // 60}m {s % 60:02d}s"
    elif s < 86400:
        body = f"{s // 3600}h {s % 3600 // 60:02d}m {s % 60:02d}s"
    else:
        body = f"{s // 86400}d {s % 86400 // 3600:02d}h {s % 3600 // 60:02d}m"
    return sign + body


_ENDED = {"failed": "failed", "refused": "was refused", "cancelled": "was cancelled",
          "unknown": "ended with no recorded outcome"}


def _todo(text: str) -> str:
    return f"> {TODO_MARKER}: {text}"


def _minutes(minutes: int | None) -> str:
    if minutes is None:
        return "best effort"
    return duration_text(timedelta(minutes=minutes))


def _table(head: list[str], rows: Iterable[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _event_kind(e: TimelineEvent, incident_id: int) -> str:
    if e.incident_id is None:
        return f"{e.kind} (environment)"
    if e.incident_id != incident_id:
        return f"{e.kind} (#{e.incident_id})"
    return e.kind


def _code(text: str) -> str:
    """An identifier we wrote ourselves (action ids, item ids) as inline code."""
    return "`" + text.replace("`", "'") + "`"


# ---------------------------------------------------------------------------- sections

def _head(pm: PostMortem) -> list[str]:
    inc = pm.incident
    lines = [
        # The comment must not contain the marker itself: a finished document greps clean.
        "<!-- x402console post-mortem draft. Every passage only a person can write is marked with the"
        " author marker (TODO, then \"(author)\" with no space); grep for it to list what is left. -->",
        "",
        f"# Post-mortem: incident #{inc.id}: {md_escape(inc.title)}",
        "",
    ]
    if pm.drill:
        lines += ["> **DRILL.** This incident was a training exercise, not a real outage: keep it out of "
                  "production incident figures.", ""]
    if pm.security:
        lines += ["> **SECURITY INCIDENT.** Handled under the runbook's security protocol: preserve evidence, "
                  "involve the security team, restrict who may read this document.", ""]
    declared_sev = pm.severity_changes[0].new if pm.severity_changes else inc.severity
    sev = inc.severity if declared_sev == inc.severity and pm.peak_severity == inc.severity else (
        f"{inc.severity} (declared {declared_sev}, peak {pm.peak_severity})")
    runbook = (f"{inc.runbook_incident}: {pm.runbook_title}" if pm.runbook_title
               else str(inc.runbook_incident) if inc.runbook_incident else "none chosen")
    if pm.review_required:
        review = "required (P0/P1 incident)" + (f"; meet by {pm.review_by.isoformat()}" if pm.review_by else
                                                "; schedule it once the incident is resolved")
    else:
        review = "optional (below P1)"
    rows = [
        ["Incident", f"#{inc.id}"],
        ["Title", md_escape(inc.title)],
        ["Environment", md_escape(pm.environment)],
        ["Status", inc.status + (f" (reopened {len(pm.reopens)}x)" if pm.reopens else "")],
        ["Severity", sev],
        ["Runbook incident", md_escape(runbook)],
        ["Declared by", md_escape(inc.declared_by)],
        ["Declared at", _t(inc.created_at)],
        ["Security incident", "yes" if pm.security else "no"],
        ["Drill", "yes" if pm.drill else "no"],
        ["Review", review],
        ["Document", f"Draft, generated {_t(pm.generated_at)} from the incident journal"],
    ]
    lines += _table(["Field", "Value"], rows)
    lines += ["", "This review is blameless: it describes what the system and the process allowed, not who erred.", "",
              "## Summary", "", _todo("two or three sentences: what happened, who was affected, how it was fixed."), ""]
    return lines


def _timeline(pm: PostMortem) -> list[str]:
    lines = ["## 1. Timeline", "", "### Milestones", ""]
    lines += _table(
        ["Milestone", "Time (UTC)", "Since first signal", "Since declaration", "Source"],
        ([m.name, _t(m.at, unit=False), duration_text(m.since_signal), duration_text(m.since_declared),
          md_escape(m.source) or "–"] for m in pm.milestones),
    )
    by = {m.name: m for m in pm.milestones}
    lines += [
        "",
        f"- Time to detect (first signal to declaration): {duration_text(by['Declared'].since_signal)}",
        f"- Time to acknowledge: {duration_text(by['Acknowledged'].since_signal)}",
        f"- Time to mitigate: {duration_text(by['Mitigated'].since_signal)}",
        f"- Time to resolve: {duration_text(by['Resolved'].since_signal)}",
        "",
        "Durations run from the first signal. Acknowledged and mitigated are the first time the incident "
        "reached that state (a later state implies the earlier ones); resolved counts only while the "
        "incident is resolved.",
        "",
    ]
    if pm.reopens:
        lines += ["### Reopened", ""]
        for r in pm.reopens:
            cleared = ", ".join(f"{name} {_t(at) if at else 'unset'}" for name, at in r.previous)
            note = f": {md_escape(r.note)}" if r.note else ""
            lines.append(f"- {_t(r.at)} by {md_escape(r.actor)}{note} (cleared: {md_escape(cleared) or 'nothing'})")
        lines.append("")
    lines += ["### Events", ""]
    if pm.timeline:
        lines += _table(
            ["Time (UTC)", "Kind", "Actor", "Event"],
            ([_t(e.ts, unit=False), _event_kind(e, pm.incident.id), md_escape(e.actor), md_escape(e.summary)]
             for e in pm.timeline),
        )
    else:
        lines.append("No events recorded.")
    lines += ["", _todo("add what the journal cannot know: when the contributing factor began, user reports, "
                        "status-page updates, with a link to the data behind each time."), ""]
    return lines


def _root_cause(pm: PostMortem) -> list[str]:
    lines = ["## 2. Root cause", ""]
    if pm.runbook_title:
        lines.append(f"Runbook incident chosen during the response: {pm.incident.runbook_incident}, "
                     f"{md_escape(pm.runbook_title)}.")
    else:
        lines.append("No runbook incident was chosen during the response.")
    item = next((i for p in pm.checklist for i in p.items if i.item_id == "response.root_cause_identified"), None)
    if item is not None:
        lines.append(f"Checklist \"{md_escape(item.text)}\": "
                     + (f"checked by {md_escape(item.actor or '')} at {_t(item.at)}." if item.checked else "not checked."))
    lines += ["", _todo("the underlying cause and the contributing factors. Ask why until the answer is a "
                        "property of the system or the process, not a person."), ""]
    return lines


def _impact(pm: PostMortem) -> list[str]:
    inc = pm.incident
    resolved = pm.milestone("Resolved").at
    start = pm.milestone("First signal").at or inc.created_at
    if resolved is not None:
        span = f"{duration_text(resolved - start)} from first signal to resolution"
    else:
        span = f"ongoing: {duration_text(pm.generated_at - start)} from first signal to {_t(pm.generated_at)}"
    lines = ["## 3. Impact", "", f"Duration: {span}.", "", "### Severity history", ""]
    lines += _table(
        ["Time (UTC)", "Severity", "Changed by", "Reason"],
        ([_t(c.at, unit=False), c.new if c.old is None else f"{c.old} -> {c.new}", md_escape(c.actor),
          md_escape(c.reason)] for c in pm.severity_changes),
    )
    totals: dict[str, timedelta] = {}
    for p in pm.severity_periods:
        totals[p.severity] = totals.get(p.severity, timedelta(0)) + p.duration
    ordered = sorted(totals, key=lambda s: SEVERITIES.index(s) if s in SEVERITIES else len(SEVERITIES))
    lines += ["", "Time open at each severity: " + ", ".join(f"{s} {duration_text(totals[s])}" for s in ordered) + "."]
    lines += ["", "### Targets", ""]
    lines += _table(
        ["Target", "Severity", "Limit", "Due (UTC)", "Done (UTC)", "Result"],
        ([t.which, t.severity, _minutes(t.minutes), _t(t.due_at, unit=False) if t.due_at else "–",
          _t(t.done_at, unit=False), t.state] for t in pm.targets),
    )
    lines += ["", "Targets are the final severity's, counted from the declaration.", "",
              _todo("who and what was affected: failed or slow proof requests, users and payments, duration of "
                    "user-visible impact, support requests; link the metrics."), ""]
    return lines


def _detection(pm: PostMortem) -> list[str]:
    lines = ["## 4. Detection", ""]
    if pm.first_signal is not None:
        lines.append(f"First signal: {_t(pm.first_signal.ts)}, {md_escape(pm.first_signal.summary)} "
                     f"(recorded by {md_escape(pm.first_signal.actor)}).")
    else:
        lines.append("No observation was recorded before the declaration: the declaration is the detection time.")
    lines.append(f"Declared {_t(pm.incident.created_at)} by {md_escape(pm.incident.declared_by)}; time to detect "
                 f"{duration_text(pm.milestone('Declared').since_signal)}.")
    if len(pm.observations) > 1:
        lines += ["", "Observations before the declaration:", ""]
        lines += [f"- {_t(e.ts)}: {md_escape(e.summary)}" for e in pm.observations]
    lines += ["", "### Escalations", ""]
    if pm.escalations:
        lines += [f"- {_t(e.ts)}: {md_escape(e.summary)}" for e in pm.escalations]
    else:
        lines.append("No escalation step was recorded.")
    lines += ["", _todo("how was it detected (alert, user report, someone noticing)? Could monitoring have "
                        "caught it sooner, and what would that alert be?"), ""]
    return lines


def _action_rows(actions: Iterable[ActionEntry]) -> list[list[str]]:
    return [[_t(a.started_at, unit=False), _code(a.action_id), md_escape(a.target), md_escape(a.actor), a.outcome,
             _t(a.finished_at, unit=False) if a.finished_at else "–", md_escape(a.summary) or "–"] for a in actions]


def _response(pm: PostMortem) -> list[str]:
    lines = ["## 5. Response", "", "### Responders", ""]
    lines += _table(["Who", "Roles seen"], ([md_escape(r.who), ", ".join(r.roles) or "–"] for r in pm.responders))
    lines += ["", "### Actions taken", ""]
    if pm.actions:
        lines += _table(["Started (UTC)", "Action", "Target", "By", "Outcome", "Finished (UTC)", "Summary"],
                        _action_rows(pm.actions))
        counts = pm.outcome_counts
        lines += ["", f"{len(pm.actions)} action(s): " + ", ".join(f"{n} {o}" for o, n in counts.items()) + "."]
        for a in pm.actions:
            if a.outcome == "succeeded":
                continue
            what = (f"started at {_t(a.started_at)} and has no outcome recorded (still running, or its console "
                    f"stopped)" if a.outcome == "started" else f"{_ENDED[a.outcome]} at {_t(a.finished_at)}")
            # One paragraph each: consecutive quoted lines would merge into one.
            lines += ["", _todo(f"{_code(a.action_id)} on {md_escape(a.target)} {what}: what did it mean for the "
                                f"response, and what was done instead?")]
    else:
        lines.append("No action was run from the console.")
    lines += ["", "### Checklist", ""]
    for phase in pm.checklist:
        lines.append(f"**{md_escape(phase.title)}** ({phase.done}/{phase.total})")
        lines.append("")
        for i in phase.items:
            mark = "x" if i.checked else " "
            who = f" ({md_escape(i.actor or '')}, {_t(i.at)})" if i.checked else ""
            lines.append(f"- [{mark}] {md_escape(i.text)}{who}")
        lines.append("")
    if pm.notes:
        lines += ["### Notes", ""]
        lines += [f"- {_t(e.ts)}, {md_escape(e.actor)}: {md_escape(e.summary)}" for e in pm.notes]
        lines.append("")
    lines += [_todo("what went well, what did not, where the team was lucky."), ""]
    return lines


def _resolution(pm: PostMortem) -> list[str]:
    mitigated, resolved = pm.milestone("Mitigated"), pm.milestone("Resolved")
    lines = ["## 6. Resolution", "",
             f"- Mitigated: {_t(mitigated.at)}" + (f" ({md_escape(mitigated.source)})" if mitigated.source else ""),
             f"- Resolved: {_t(resolved.at)}" + (f" ({md_escape(resolved.source)})" if resolved.source else "")]
    for e in pm.timeline:
        if e.kind != "status_changed" or e.incident_id != pm.incident.id:
            continue
        note = e.details.get("note")
        if isinstance(note, str) and note.strip():
            lines.append(f"- {_t(e.ts)}, {md_escape(e.summary)}: {md_escape(note)}")
    succeeded = dict.fromkeys(f"{_code(a.action_id)} on {md_escape(a.target)}"
                              for a in pm.actions if a.outcome == "succeeded")
    if succeeded:
        lines += ["", "Actions that succeeded: " + ", ".join(succeeded) + "."]
    lines += ["", _todo("what fixed it, and how the fix was verified."), ""]
    return lines


def _prevention(pm: PostMortem) -> list[str]:
    lines = ["## 7. Prevention", ""]
    if pm.runbook_prevention:
        lines += [f"The runbook's prevention list for {md_escape(pm.runbook_title or 'this incident')}: tick what "
                  "was already in place, and make an action item of what would have helped.", ""]
        lines += [f"- [ ] {md_escape(text)}" for text in pm.runbook_prevention]
        lines.append("")
    lines += [_todo("what would prevent this incident, or detect it sooner, next time (monitoring, limits, "
                    "automation, runbook changes)?"), ""]
    return lines


def _action_items(pm: PostMortem) -> list[str]:
    lines = ["## 8. Action items", "", "Every item needs one owner and a deadline.", ""]
    rows = [[str(n), md_escape(a.text), md_escape(a.owner) if a.owner else TODO_MARKER,
             md_escape(a.deadline) if a.deadline else TODO_MARKER, md_escape(a.source)]
            for n, a in enumerate(pm.action_items, start=1)]
    if rows:
        lines += _table(["#", "Action item", "Owner", "Deadline", "From"], rows)
        lines.append("")
    lines += [_todo("add the remaining action items, each with an owner and a deadline."), ""]
    return lines


def _bundle(b: EvidenceBundle) -> list[str]:
    missing = "not recorded"
    lines = [f"### {_code(b.action_id)} on {md_escape(b.target)} (record {b.record_id})", "",
             f"- Collected by {md_escape(b.actor)}, finished {_t(b.finished_at)}",
             f"- Summary: {md_escape(b.summary) or missing}",
             f"- Bundle directory: {md_escape(b.bundle_dir) if b.bundle_dir else missing}",
             f"- Manifest: {md_escape(b.manifest) if b.manifest else missing}",
             f"- Manifest SHA-256: {md_escape(b.manifest_sha256) if b.manifest_sha256 else missing}"]
    if b.manifest_json:
        lines.append(f"- Manifest (JSON): {md_escape(b.manifest_json)}")
    if b.manifest and b.manifest_sha256:
        # The hash kept in the journal is what proves, later, that the bundle is the one collected.
        lines.append("- To verify: `sha256sum` of the manifest must print the SHA-256 above, and "
                     "`sha256sum -c` of the manifest, run in the bundle directory, must pass")
    if b.missing:
        lines += ["- Not collected:"] + [f"  - {md_escape(m)}" for m in b.missing]
    if b.files:
        lines += ["", *_table(["File", "SHA-256", "Bytes"], (
            [md_escape(f.path), md_escape(f.sha256) if f.sha256 else missing, str(f.size) if f.size is not None else "–"]
            for f in b.files)), ""]
    else:
        lines.append("- Files: none listed")
    if b.artifacts:
        lines += ["- Artifacts:"] + [f"  - {md_escape(a)}" for a in b.artifacts]
    lines.append("")
    return lines


def _evidence(pm: PostMortem) -> list[str]:
    lines = ["## Evidence", ""]
    if not pm.evidence:
        lines.append("No evidence bundle was recorded for this incident.")
        lines.append("")
    for b in pm.evidence:
        lines += _bundle(b)
    if pm.security:
        preserved = min((b.finished_at for b in pm.evidence if b.finished_at), default=None)
        lines += ["### Security checks", "",
                  f"- Evidence preserved: {'yes, first at ' + _t(preserved) if preserved else 'NO'}"]
        if pm.disruptive_before_evidence:
            lines.append("- Disruptive actions that succeeded before evidence was preserved "
                         "(runbook: DO NOT restart services immediately):")
            lines += [f"  - {_t(a.started_at)} {_code(a.action_id)} on {md_escape(a.target)} by {md_escape(a.actor)}"
                      for a in pm.disruptive_before_evidence]
        else:
            lines.append("- Disruptive actions before evidence was preserved: none")
        lines += ["", _todo("was the security team notified, and when? Is legal involved (data breach)? Were "
                            "attacker addresses tracked and the evidence stored read-only?"), ""]
    return lines


def render_markdown(pm: PostMortem) -> str:
    """The post-mortem draft as Markdown text (ends with one newline)."""
    sections = (_head, _timeline, _root_cause, _impact, _detection, _response, _resolution, _prevention,
                _action_items, _evidence)
    lines: list[str] = []
    for section in sections:
        lines += section(pm)
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"
