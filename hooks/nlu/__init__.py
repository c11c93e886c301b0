"""The engine of rasa-nlu-compare: NLU data, the runner, metrics, the report and the heat map."""
