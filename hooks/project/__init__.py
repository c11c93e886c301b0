"""The Rasa project model: find the root, load config/domain/data with lines,
names, the training fingerprint, the rule for a custom action."""
