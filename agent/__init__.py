"""The rasa-gitops deploy agent."""
