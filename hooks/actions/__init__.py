"""The engine of rasa-check-actions: reading action code statically and matching it to the domain."""
