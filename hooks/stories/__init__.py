"""The engine of rasa-test-stories: picking stories, the model cache, running Rasa's test and reading its results."""
