from . import sentence_prediction_hire  # noqa: F401  (registers the criterion)
