"""Text -> the space-separated tokens a fairseq dictionary (dict.txt) holds.

Three kinds, each described by a small JSON spec whose paths are relative to the spec's folder:

* ``{"type": "gpt2", "encoder_json": "encoder.json", "vocab_bpe": "vocab.bpe"}`` — RoBERTa.
  Uses fairseq's own ``fairseq.data.encoders.gpt2_bpe_utils`` (as ``GPT2BPE`` and
  ``examples/roberta/multiprocessing_bpe_encoder.py`` do): tokens are the BPE ids as decimal
  strings.
* ``{"type": "sentencepiece", "model": "sentencepiece.bpe.model"}`` — XLM-R style; pieces as
  fairseq's ``SentencepieceBPE`` gives them (sentencepiece library).
* ``{"type": "wordpiece", "vocab": "vocab.txt", "lowercase": true}`` — BERT-family checkpoints
  converted to fairseq; the ``tokenizers`` library's ``BertWordPieceTokenizer`` with
  ``add_special_tokens=False`` (e.g. ``"play ##ing"``). Its other options, each true or false,
  are optional: ``strip_accents`` (absent: as ``lowercase``), ``handle_chinese_chars`` and
  ``clean_text`` (absent: true).

fairseq, sentencepiece and tokenizers are imported only when a tokenizer of that kind is built.
This module does not import fairseq_hire. A spec, or a file it names, that is not what its kind
expects is refused with a ValueError of one line (each library raises its own kinds of error on
a file of another format).
"""
import json
import os
from pathlib import Path
from typing import Dict, Optional

from .errors import shown
from .readers.reading import parsed_json, read_regular, utf8_text

SPEC_NAME = "tokenizer_spec.json"
SPEC_LIMIT = 1 << 20  # bytes; a spec names a few files
TYPES = ("gpt2", "sentencepiece", "wordpiece")
OPTIONS = {"wordpiece": ("lowercase", "strip_accents", "handle_chinese_chars", "clean_text"),  # besides the files
           "gpt2": ("add_prefix_space",)}
# spec key -> default file name when the tokenizer is copied beside a dataset
FILE_KEYS = {
    "gpt2": {"encoder_json": "encoder.json", "vocab_bpe": "vocab.bpe"},
    "sentencepiece": {"model": "sentencepiece.bpe.model"},
    "wordpiece": {"vocab": "vocab.txt"},
}


class TokenizerFileError(ValueError):
    """A tokenizer file its library reads, but not of the kind it should be."""


class Tokenizer:
    """encode(text) -> space-joined tokens as in dict.txt; decode(tokens) -> text.

    Construction only checks that the files exist; they are read (and fairseq, sentencepiece or
    tokenizers imported) by load(), which the first encode/decode calls if needed."""

    type: str = ""
    expected: str = ""  # what its files hold, for the refusal of a file of another format

    def __init__(self, files: Dict[str, str], **options):
        self.files = {k: str(Path(v).resolve()) for k, v in files.items()}
        self.options = options
        self._loaded = False
        missing = [k for k in FILE_KEYS[self.type] if k not in self.files]
        if missing:
            raise ValueError(f"{self.type} tokenizer needs {', '.join(missing)}")
        for key, path in self.files.items():
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{self.type} tokenizer: {key} file not found: {path}")

    def load(self) -> "Tokenizer":
        """Read the files now (idempotent); a ValueError if they are not what this kind reads."""
        if not self._loaded:
            try:
                self._load()
            except Exception as error:  # json, fairseq, sentencepiece, tokenizers: each its own kinds
                text = str(error).strip()
                # our own check's words whole; a library's first line, cut short (it may quote a file)
                detail = text if isinstance(error, TokenizerFileError) else shown(
                    text.splitlines()[0] if text else type(error).__name__)
                raise ValueError(f"cannot read the {self.type} tokenizer's files {', '.join(self.files.values())} "
                                 f"({detail}); expected {self.expected}") from None
            self._loaded = True
        return self

    def _load(self):
        raise NotImplementedError

    def encode(self, text: str) -> str:
        if not self._loaded:
            self.load()
        return self._encode(text)

    def decode(self, tokens: str) -> str:
        if not self._loaded:
            self.load()
        return self._decode(tokens)

    def _encode(self, text: str) -> str:
        raise NotImplementedError

    def _decode(self, tokens: str) -> str:
        raise NotImplementedError

    def spec(self) -> dict:
        """The spec naming this tokenizer's files by absolute path."""
        return {"type": self.type, **self.files, **self.options}

    def save(self, folder) -> Path:
        """Copy the files into `folder` and write tokenizer_spec.json there (relative paths)."""
        import shutil

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        spec = {"type": self.type}
        for key, src in self.files.items():
            name = FILE_KEYS[self.type].get(key, Path(src).name)
            shutil.copyfile(src, folder / name)
            spec[key] = name
        spec.update(self.options)
        path = folder / SPEC_NAME
        path.write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
        return path

    # Pickled as its files and options, so a spawn-started worker can rebuild it.
    def __getstate__(self):
        return {"files": self.files, "options": self.options}

    def __setstate__(self, state):
        self.files = state["files"]
        self.options = state["options"]
        self._loaded = False
        self.load()

    def __repr__(self):
        return f"{type(self).__name__}({self.spec()})"


class GPT2Tokenizer(Tokenizer):
    type = "gpt2"
    expected = "GPT-2's encoder.json (a JSON object of token -> id) and vocab.bpe (its merges)"

    def _load(self):
        from fairseq.data.encoders.gpt2_bpe_utils import get_encoder

        self.bpe = get_encoder(self.files["encoder_json"], self.files["vocab_bpe"])
        _check_gpt2(self.bpe, self.files["vocab_bpe"])

    def _encode(self, text: str) -> str:
        # == fairseq.data.encoders.gpt2_bpe.GPT2BPE.encode; add_prefix_space as the tokenizers
        # library's ByteLevel pre-tokenizer (a converted RoBERTa-family tokenizer) adds it
        if self.options.get("add_prefix_space") and text and not text.startswith(" "):
            text = " " + text
        return " ".join(map(str, self.bpe.encode(text)))

    def _decode(self, tokens: str) -> str:
        # == fairseq.data.encoders.gpt2_bpe.GPT2BPE.decode
        return self.bpe.decode(
            [int(tok) if tok not in {"<unk>", "<mask>"} else tok for tok in tokens.split()]
        )


def _check_gpt2(bpe, vocab_bpe: str) -> None:
    """fairseq's get_encoder takes any JSON object and any lines, and encodes garbage with them
    (a dict.txt as vocab.bpe splits text into single bytes). GPT-2's files: a '#version' line
    (which get_encoder skips) and the tables check_gpt2_tables checks."""
    with open(vocab_bpe, encoding="utf-8") as f:
        if not f.readline().startswith("#version"):
            raise TokenizerFileError("vocab.bpe does not start with GPT-2's '#version' line")
    check_gpt2_tables(bpe.encoder, bpe.bpe_ranks)


def check_gpt2_tables(encoder: dict, merges, encoder_name: str = "encoder.json", merges_name: str = "vocab.bpe"):
    """A TokenizerFileError unless `encoder` (token -> id) holds the symbol of every byte and
    each merge (a tuple, as fairseq's get_encoder splits a line) joins two of its tokens into a
    third. The converter checks a Hugging Face vocabulary with it before writing encoder.json."""
    from fairseq.data.encoders.gpt2_bpe_utils import bytes_to_unicode

    if not all(isinstance(token, str) and isinstance(i, int) for token, i in encoder.items()):
        raise TokenizerFileError(f"{encoder_name} is not a JSON object of token -> integer id")
    missing = [symbol for symbol in bytes_to_unicode().values() if symbol not in encoder]
    if missing:
        raise TokenizerFileError(f"{encoder_name} lacks {len(missing)} of the 256 byte symbols, e.g. {shown(missing[0])}")
    for merge in merges:
        if len(merge) != 2 or not all(token in encoder for token in (*merge, "".join(merge))):
            raise TokenizerFileError(f"{merges_name}'s merge {shown(' '.join(merge))} is not two tokens of "
                                     f"{encoder_name} making a third")


class SentencepieceTokenizer(Tokenizer):
    type = "sentencepiece"
    expected = "a sentencepiece model (.model)"

    def _load(self):
        import sentencepiece as spm

        self.sp = spm.SentencePieceProcessor()
        self.sp.Load(self.files["model"])

    def _encode(self, text: str) -> str:
        # == fairseq.data.encoders.sentencepiece_bpe.SentencepieceBPE.encode (no sampling)
        return " ".join(self.sp.Encode(text, out_type=str))

    def _decode(self, tokens: str) -> str:
        # == SentencepieceBPE.decode
        return tokens.replace(" ", "").replace("\u2581", " ").strip()


class WordPieceTokenizer(Tokenizer):
    type = "wordpiece"
    expected = "a WordPiece vocab.txt (one token a line, with [UNK], [CLS] and [SEP])"

    def __init__(self, files, lowercase: bool = True, **options):
        super().__init__(files, lowercase=bool(lowercase), **options)

    def _load(self):
        from tokenizers import BertWordPieceTokenizer

        self.wp = BertWordPieceTokenizer(
            self.files["vocab"], lowercase=self.options.get("lowercase", True),
            strip_accents=self.options.get("strip_accents"),
            handle_chinese_chars=self.options.get("handle_chinese_chars", True),
            clean_text=self.options.get("clean_text", True),
        )

    def _encode(self, text: str) -> str:
        return " ".join(self.wp.encode(text, add_special_tokens=False).tokens)

    def _decode(self, tokens: str) -> str:
        ids = [self.wp.token_to_id(t) for t in tokens.split()]
        unk = self.wp.token_to_id("[UNK]")
        return self.wp.decode([unk if i is None else i for i in ids], skip_special_tokens=False)


_CLASSES = {c.type: c for c in (GPT2Tokenizer, SentencepieceTokenizer, WordPieceTokenizer)}


def build_tokenizer(type: str, **files) -> Tokenizer:
    """build_tokenizer("gpt2", encoder_json=..., vocab_bpe=...) |
    build_tokenizer("sentencepiece", model=...) | build_tokenizer("wordpiece", vocab=..., lowercase=True)."""
    if type not in _CLASSES:
        raise ValueError(f"unknown tokenizer type {type!r}; expected one of {', '.join(TYPES)}")
    options = {k: files.pop(k) for k in list(files) if k not in FILE_KEYS[type]}
    files = {k: v for k, v in files.items() if v is not None}
    return _CLASSES[type](files, **options)


def read_spec(spec_path) -> dict:
    """The spec at `spec_path` with its file paths made absolute."""
    spec_path = Path(spec_path)
    try:
        raw = read_regular(spec_path, "missing: expected a tokenizer spec", "a tokenizer spec (JSON)", SPEC_LIMIT)
    except OSError as e:
        raise ValueError(f"{spec_path}: cannot read tokenizer spec: {e.strerror or e}") from None
    spec = parsed_json(utf8_text(raw, spec_path), spec_path)
    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str) or spec["type"] not in _CLASSES:
        raise ValueError(
            f"{spec_path}: expected a JSON object with \"type\" one of {', '.join(TYPES)}"
        )
    known = {"type", *FILE_KEYS[spec["type"]], *OPTIONS.get(spec["type"], ())}
    unknown = [key for key in spec if key not in known]
    if unknown:  # it would be kept as an option of the tokenizer, and copied beside every dataset
        raise ValueError(f"{spec_path}: unknown key {shown(unknown[0])} for a {spec['type']} spec; expected "
                         f"{', '.join(map(repr, sorted(known)))}")
    out = dict(spec)
    for key in FILE_KEYS[spec["type"]]:
        if key not in spec:
            raise ValueError(f"{spec_path}: a {spec['type']} spec needs {key!r}")
        if not isinstance(spec[key], str) or not spec[key]:
            raise ValueError(f"{spec_path}: {key!r} is {shown(spec[key])}; expected a file name (relative to "
                             "the spec's folder)")
        out[key] = str((spec_path.parent / spec[key]).resolve())
    for option in OPTIONS.get(spec["type"], ()):
        if not isinstance(spec.get(option, False), bool):
            raise ValueError(f"{spec_path}: {option!r} is {shown(spec[option])}; expected true or false")
    return out


def load_tokenizer(spec_path) -> Tokenizer:
    """The tokenizer a tokenizer_spec.json describes (paths relative to its folder)."""
    spec = read_spec(spec_path)
    return build_tokenizer(spec.pop("type"), **spec)


def default_gpt2_dir() -> Optional[Path]:
    """fairseq_hire/assets/gpt2_bpe (shipped with the package), found without importing it."""
    import importlib.util

    candidates = []
    try:
        found = importlib.util.find_spec("fairseq_hire")
    except (ImportError, ValueError):
        found = None
    if found is not None and found.submodule_search_locations:
        candidates += [Path(p) / "assets" / "gpt2_bpe" for p in found.submodule_search_locations]
    candidates.append(Path(__file__).resolve().parent.parent / "fairseq_hire" / "assets" / "gpt2_bpe")
    for c in candidates:
        if (c / "encoder.json").is_file():
            return c
    return None
