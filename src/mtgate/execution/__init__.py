"""The order pipeline: pre-validation, journal, submit, answers, resolution."""
