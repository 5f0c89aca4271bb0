"""hierlatent.plot package."""
