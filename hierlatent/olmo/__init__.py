"""hierlatent.olmo package."""
