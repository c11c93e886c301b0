"""The engine of rasa-validate: light checks, NLU schema, and the checks that need Rasa's own code."""
