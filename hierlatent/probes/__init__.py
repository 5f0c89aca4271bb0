"""hierlatent.probes package."""
