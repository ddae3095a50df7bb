from .roberta_hire import RobertaHireModel  # noqa: F401  (registers the model)
