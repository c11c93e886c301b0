"""Plumbing with no Rasa knowledge: the one error type and exit codes, the one
process seam, the bounded YAML loader, findings."""
