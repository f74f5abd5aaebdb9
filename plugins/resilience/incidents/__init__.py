"""Incidents: severity, escalation record, the Incident Report Template, post-mortem follow-ups.

A run that declares an incident (dr_activation) records it in the control DB (``store``),
drafts the runbook's Incident Report from its own timeline (``report``), and
``postmortem_followups`` reminds the incident's channel of the runbook's Post-Mortem Process
(``followups``) until each item is marked done (``resilience incident done``).
"""
