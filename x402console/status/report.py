"""The status report: one JSON object with stable keys, and the same content as text.

JSON object (schema 1). Every key is always present; unknown values are null.
  schema              1
  taken_at            ISO 8601 UTC time the signals were taken
  environment         [environment] name; drill: true when the config is a drill's
  config              the configuration file read (null: built-in defaults)
  window_seconds      how far back logs (and Prometheus rates) looked
  exit_code           0 ok, 1 P3/P2 suggested, 2 P1/P0 suggested, 3 could not observe
  verdict             "ok" | "degraded" | "critical" | "unobservable"
  severity            {level, summary, reasons: [{level, rule, text, subject}], uncertain: [...],
                       missing: [...], response_minutes, resolution_minutes}
  incidents           the runbook incidents it looks like, best first, at most 3:
                       [{incident, title, score, evidence: [...], missing: [...]}]
  open_incidents      unresolved incidents of the journal: [{id, title, severity, status,
                       security, drill, runbook_incident, created_at}]
  replicas            [{name, up, state, restarts, memory_bytes, memory_limit_bytes,
                       memory_ratio, memory_growth_bytes_per_s}]
  metrics             {proof_rate, proof_rate_baseline, error_ratio, latency_p50_seconds,
                       latency_p95_seconds, latency_p95_at_least, rate_limited_rate,
                       active_requests, verification_failures}
  logs                {lines, counts: {pattern: n}, top_client, top_client_share,
                       top_client_requests}   (lines null: no log source)
  database            {integrity: "ok"|"failed"|null, error}
  verification_key    {status: "match"|"changed"|"missing"|null}
  components          {name: "up"|"down"|"unknown"}
  alerts_firing       [alert names]
  unobserved          [what could not be observed, and why]
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any, Iterable, Sequence

from x402console.core.signals import LOG_PATTERNS, Signals

__all__ = [
    "SCHEMA",
    "EXIT_OK",
    "EXIT_DEGRADED",
    "EXIT_CRITICAL",
    "EXIT_UNOBSERVABLE",
    "exit_code_for",
    "build_report",
    "error_report",
    "render_text",
]

SCHEMA = 1
EXIT_OK, EXIT_DEGRADED, EXIT_CRITICAL, EXIT_UNOBSERVABLE = 0, 1, 2, 3
VERDICTS = {EXIT_OK: "ok", EXIT_DEGRADED: "degraded", EXIT_CRITICAL: "critical", EXIT_UNOBSERVABLE: "unobservable"}
MAX_INCIDENTS = 3


def nothing_observable(signals: Signals) -> bool:
    """No replica to look at: every figure would be a guess. (All replicas down is an
    observation, P0, not this.)"""
    return not signals.replicas


def exit_code_for(level: str | None, signals: Signals) -> int:
    if nothing_observable(signals):
        return EXIT_UNOBSERVABLE
    if level in ("P0", "P1"):
        return EXIT_CRITICAL
    if level in ("P2", "P3"):
        return EXIT_DEGRADED
    return EXIT_OK


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _num(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _texts(items: Iterable[Any]) -> list[str]:
    return [str(x) for x in items or ()]


def _match_dict(m: Any) -> dict:
    return {
        "incident": getattr(m, "incident", None),
        "title": getattr(m, "title", None),
        "score": _num(getattr(m, "score", None)),
        "evidence": _texts(getattr(m, "evidence", ())),
        "missing": _texts(getattr(m, "missing", ())),
    }


def _assessment_dict(a: Any) -> dict:
    if a is None:
        return {"level": None, "summary": None, "reasons": [], "uncertain": [], "missing": [],
                "response_minutes": None, "resolution_minutes": None}
    return {
        "level": a.level,
        "summary": a.summary,
        "reasons": [
            {"level": r.level, "rule": r.rule_id, "text": r.text, "subject": r.subject} for r in a.reasons
        ],
        "uncertain": list(getattr(a, "uncertain", ()) or ()),
        "missing": list(a.missing),
        "response_minutes": a.response_minutes,
        "resolution_minutes": a.resolution_minutes,
    }


def build_report(
    signals: Signals,
    assessment: Any,
    matches: Sequence[Any],
    open_incidents: Sequence[Any],
    *,
    settings: Any,
    window_seconds: float,
    extra_unobserved: Sequence[str] = (),
) -> dict:
    level = assessment.level if assessment is not None else None
    code = exit_code_for(level, signals)
    ranked = [m for m in matches if (getattr(m, "score", 0) or 0) > 0][:MAX_INCIDENTS]
    s = signals
    return {
        "schema": SCHEMA,
        "taken_at": _iso(s.taken_at),
        "environment": settings.environment.name,
        "drill": bool(settings.environment.drill),
        "config": str(settings.source) if settings.source else None,
        "window_seconds": window_seconds,
        "exit_code": code,
        "verdict": VERDICTS[code],
        "severity": _assessment_dict(assessment),
        "incidents": [_match_dict(m) for m in ranked],
        "open_incidents": [i.as_dict() for i in open_incidents],
        "replicas": [
            {
                "name": r.name,
                "up": r.up,
                "state": r.state,
                "restarts": r.restarts,
                "memory_bytes": _num(r.memory_bytes),
                "memory_limit_bytes": _num(r.memory_limit_bytes),
                "memory_ratio": _num(r.memory_ratio),
                "memory_growth_bytes_per_s": _num(r.memory_growth_bytes_per_s),
            }
            for r in s.replicas
        ],
        "metrics": {
            "proof_rate": _num(s.proof_rate),
            "proof_rate_baseline": _num(s.proof_rate_baseline),
            "error_ratio": _num(s.error_ratio),
            "latency_p50_seconds": _num(s.latency_p50),
            "latency_p95_seconds": _num(s.latency_p95),
            "latency_p95_at_least": bool(s.latency_p95_at_least),
            "rate_limited_rate": _num(s.rate_limited_rate),
            "active_requests": _num(s.active_requests),
            "verification_failures": s.verification_failures,
        },
        "logs": {
            "lines": s.log_lines,
            "counts": {p: s.log_count(p) for p in LOG_PATTERNS} if s.log_lines is not None else {},
            "top_client": s.top_client,
            "top_client_share": _num(s.top_client_share),
            "top_client_requests": s.top_client_requests,
        },
        "database": {"integrity": s.db_integrity, "error": s.db_error},
        "verification_key": {"status": s.vk_status},
        "components": dict(s.components),
        "alerts_firing": list(s.alerts_firing),
        "unobserved": list(s.unobserved) + list(extra_unobserved),
    }


def error_report(message: str, *, config: str | None = None) -> dict:
    """The JSON object when nothing could be collected (a configuration error)."""
    return {
        "schema": SCHEMA,
        "taken_at": _iso(datetime.now(timezone.utc).timestamp()),
        "environment": None,
        "drill": False,
        "config": config,
        "window_seconds": None,
        "exit_code": EXIT_UNOBSERVABLE,
        "verdict": VERDICTS[EXIT_UNOBSERVABLE],
        "severity": _assessment_dict(None),
        "incidents": [],
        "open_incidents": [],
        "replicas": [],
        "metrics": {},
        "logs": {},
        "database": {},
        "verification_key": {},
        "components": {},
        "alerts_firing": [],
        "unobserved": [message],
        "error": message,
    }


# --------------------------------------------------------------------------- text

_MIB = 2**20


def _pct(v: Any) -> str:
    return "?" if v is None else f"{v * 100:.1f}%"


def _secs(v: Any, at_least: bool = False) -> str:
    if v is None:
        return "?"
    text = f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s"
    return ("≥ " if at_least else "") + text


def _rate(v: Any) -> str:
    return "?" if v is None else f"{v:.1f}/s"


def _mib(v: Any) -> str:
    return "?" if v is None else f"{v / _MIB:.0f} MiB"


def _minutes(m: Any) -> str:
    if m is None:
        return "best effort"
    return f"{m} min" if m < 120 else (f"{m / 60:g} h" if m < 48 * 60 else f"{m / 1440:g} days")


def render_text(report: dict) -> str:
    """The report for a terminal: the verdict first, then what it rests on."""
    out: list[str] = []
    sev = report["severity"]
    head = f"x402console status: {report.get('environment') or '?'}"
    if report.get("drill") and "drill" not in str(report.get("environment")):
        head += " (drill)"
    head += f"  {report['taken_at']}"
    if report.get("window_seconds"):
        head += f"  window {report['window_seconds']:g} s"
    out.append(head)
    if report.get("error"):
        out.append(f"could not observe: {report['error']}")
        return "\n".join(out) + "\n"
    level = sev["level"]
    if report["exit_code"] == EXIT_UNOBSERVABLE:
        out.append("verdict: could not observe the system (no replica configured or discovered)")
    elif level is None:
        out.append("verdict: ok, no severity suggested")
    else:
        out.append(f"verdict: {level} suggested (respond within {_minutes(sev['response_minutes'])}, "
                   f"resolve within {_minutes(sev['resolution_minutes'])})")
    for r in sev["reasons"]:
        out.append(f"  - {r['text']}")
    for u in sev["uncertain"]:
        out.append(f"  ? {u}")

    if report["incidents"]:
        out.append("looks like:")
        for i, m in enumerate(report["incidents"], start=1):
            score = f"{m['score']:.2f}" if isinstance(m["score"], (int, float)) else "?"
            out.append(f"  {i}. runbook incident {m['incident']}: {m['title']} (score {score})")
            for e in m["evidence"]:
                out.append(f"       + {e}")
            if m["missing"]:
                out.append(f"       not seen: {', '.join(m['missing'])}")

    out.append("replicas:")
    if not report["replicas"]:
        out.append("  none")
    for r in report["replicas"]:
        up = {True: "up", False: "DOWN", None: "?"}[r["up"]]
        mem = _mib(r["memory_bytes"])
        if r["memory_limit_bytes"]:
            mem += f" of {_mib(r['memory_limit_bytes'])} ({_pct(r['memory_ratio'])})"
        growth = r["memory_growth_bytes_per_s"]
        if growth:
            mem += f", {growth / _MIB:+.1f} MiB/s"
        restarts = "" if r["restarts"] is None else f"  restarts {r['restarts']}"
        out.append(f"  {r['name']:<16} {up:<5} {r['state'] or '?':<10} mem {mem}{restarts}")

    m = report["metrics"]
    out.append(
        f"metrics: proofs {_rate(m['proof_rate'])}"
        + (f" (earlier {_rate(m['proof_rate_baseline'])})" if m["proof_rate_baseline"] is not None else "")
        + f", errors {_pct(m['error_ratio'])}, p50 {_secs(m['latency_p50_seconds'])},"
        f" p95 {_secs(m['latency_p95_seconds'], m['latency_p95_at_least'])},"
        f" rate limited {_rate(m['rate_limited_rate'])}, active "
        + ("?" if m["active_requests"] is None else f"{m['active_requests']:g}")
        + (f", {m['verification_failures']} invalid proofs" if m["verification_failures"] else "")
    )
    lg = report["logs"]
    if lg.get("lines") is None:
        out.append("logs: not read")
    else:
        counts = ", ".join(f"{k} {v}" for k, v in lg["counts"].items() if v) or "nothing notable"
        line = f"logs: {lg['lines']} lines; {counts}"
        if lg["top_client"]:
            line += f"; top client {lg['top_client']} ({lg['top_client_requests']} requests, {_pct(lg['top_client_share'])})"
        out.append(line)
    db = report["database"]
    db_text = db.get("integrity") or "not checked"
    if db.get("error"):
        db_text += f" ({db['error']})"
    out.append(f"proofs.db: {db_text}; verification key: {report['verification_key'].get('status') or 'not compared'}")
    if report["components"]:
        out.append("components: " + ", ".join(f"{k} {v}" for k, v in sorted(report["components"].items())))
    out.append("alerts firing: " + (", ".join(report["alerts_firing"]) or "none"))
    if report["open_incidents"]:
        out.append("open incidents (journal):")
        for inc in report["open_incidents"]:
            flag = " security" if inc["security"] else ""
            out.append(f"  #{inc['id']} {inc['severity']} {inc['status']}{flag}: {inc['title']} (since {inc['created_at']})")
    else:
        out.append("open incidents (journal): none")
    if report["unobserved"]:
        out.append("not observed:")
        for u in report["unobserved"]:
            out.append(f"  - {u}")
    return "\n".join(out) + "\n"
