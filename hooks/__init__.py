"""pre-commit hooks for Rasa projects. Never imports `agent`."""
