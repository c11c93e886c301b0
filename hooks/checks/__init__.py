"""The engine of rasa-validate: the check table and runner, light checks, NLU schema,
and the checks that need Rasa's own code."""
