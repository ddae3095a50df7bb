"""What the plugin changes outside registration, never at import or activation (see each
module's docstring): ``cpu_distributed``, fairseq's distributed training on CPU processes (the one
change of fairseq code, installed when fairseq's parser reads a command line naming the plugin's
criterion), and ``one_line_refusals``, Python's ``sys.excepthook`` for the plugin's refusals
(installed by a training run of the plugin's components)."""
