"""Chaos campaigns: preflight safety, scenario steps, verdicts and the campaign report."""
