"""The launchers fairseq-train never imports: recipes, fine-tuning, evaluation, prediction and GLUE
submissions (scripts/ are one-line wrappers around them)."""
