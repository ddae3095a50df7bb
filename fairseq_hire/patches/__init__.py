"""The only code that changes fairseq: ``cpu_distributed``, fairseq's distributed training on CPU
processes, installed by the plugin's criterion when fairseq's parser reads a run's command line
(see its docstring), never at import."""
