"""The one error the converter raises for a source it cannot convert."""


class ConversionError(ValueError):
    """The source folder is not something this converter can turn into a fairseq RoBERTa."""
