"""The plugin's task(s); fairseq's import_user_module imports every module of this folder."""
