"""The engine of rasa-test-stories and THE way to train a model and run test stories:
picking stories, the model cache, training, running Rasa's test and reading its results."""
