"""What the plugin changes outside registration, never at import, each only where fairseq's parser
reads a command line naming one of the plugin's components (see each module's docstring):
``cpu_distributed``, fairseq's distributed training on CPU processes (the one change of fairseq
code), and ``one_line_refusals``, Python's ``sys.excepthook`` for the plugin's refusals."""
