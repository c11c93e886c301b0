"""The engine of rasa-nlu-compare: the comparison, the revisions it compares,
NLU data, the runner, metrics, the report and the heat map."""
