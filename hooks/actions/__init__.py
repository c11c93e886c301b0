"""The engine of rasa-check-actions: reading action code and matching it to the domain."""
