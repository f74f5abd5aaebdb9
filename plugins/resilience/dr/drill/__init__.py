"""The monthly DR drill (``dr_monthly_drill``): its Params, its steps in runbook order (``steps``), its
outcome and report. The DR operations (activation, failback, rollback) are in ``resilience.dr``."""
