"""hierlatent.callbacks package."""
