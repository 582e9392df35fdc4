"""Remediation actions: one registry, one choke point for the safety rules (see registry.py).

Nothing here imports textual or rich; the UI renders plans, progress and outcomes.
"""

from x402console.actions.base import (
    Action,
    ActionContext,
    ActionError,
    Danger,
    Outcome,
    Plan,
    PlanStep,
    Progress,
    Refused,
    Target,
)

__all__ = [
    "Action", "ActionContext", "ActionError", "Danger", "Outcome", "Plan", "PlanStep", "Progress", "Refused",
    "Target",
]
