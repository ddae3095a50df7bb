"""The source tokenizer's vocabulary, and the fairseq dictionary (dict.txt) that gives every
fairseq index the source's embedding row for its token."""
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import torch

from .errors import ConversionError
from .source import Family, read_json, read_json_object_if_present

TOKENIZER_JSON_FILE = "tokenizer.json"

TOKENIZER_CONFIG_FILE = "tokenizer_config.json"

SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"

FAIRSEQ_SPECIAL_ROLES = ("cls", "pad", "sep", "unk")  # the source tokens taking indices 0-3

@dataclass
class Vocabulary:
    """The source tokenizer's vocabulary and the embedding rows of its special tokens."""

    token_to_row: Dict[str, int]
    special_rows: Dict[str, int]  # role (cls, pad, sep, unk, mask) -> embedding row
    described_by: Path  # the file the vocabulary came from, for error messages
    lowercase: Optional[bool] = None  # WordPiece only
    merges: Optional[List[str]] = None  # GPT-2 BPE only, without the #version header
    vocab_txt: Optional[Path] = None  # WordPiece vocab.txt to copy as is, when the source has one

def token_content(token) -> Optional[str]:
    """A special token as tokenizer_config.json writes it: a string or an AddedToken dict."""
    if isinstance(token, dict):
        return token.get("content")
    return token

def bert_normalizer(tokenizer_json: dict) -> Optional[dict]:
    normalizer = tokenizer_json.get("normalizer") or {}
    for candidate in [normalizer, *normalizer.get("normalizers", [])]:
        if candidate.get("type") == "BertNormalizer":
            return candidate
    return None

def read_vocabulary(source_dir: Path, family: Family) -> Vocabulary:
    tokenizer_json_path = source_dir / TOKENIZER_JSON_FILE
    tokenizer_json = read_json_object_if_present(tokenizer_json_path, "a tokenizers tokenizer.json")
    tokenizer_config = read_json_object_if_present(source_dir / TOKENIZER_CONFIG_FILE, "a tokenizer config") or {}
    special_tokens_map = read_json_object_if_present(source_dir / SPECIAL_TOKENS_MAP_FILE, "a special tokens map") or {}
    model = (tokenizer_json or {}).get("model") or {}

    if family.tokenizer == "wordpiece":
        vocab_txt = source_dir / "vocab.txt"
        if vocab_txt.is_file():
            lines = vocab_txt.read_text(encoding="utf-8").split("\n")
            if lines[-1] == "":
                lines.pop()
            # later duplicates win, as in HF's and the tokenizers library's vocab loading
            vocabulary = Vocabulary(
                token_to_row={token: row for row, token in enumerate(lines)}, special_rows={},
                described_by=vocab_txt, vocab_txt=vocab_txt,
            )
        elif model.get("type") == "WordPiece":
            if model.get("continuing_subword_prefix", "##") != "##":
                raise ConversionError(
                    f"{tokenizer_json_path}: WordPiece continuing_subword_prefix "
                    f"{model['continuing_subword_prefix']!r}; expected '##' (BERT's)"
                )
            vocabulary = Vocabulary(
                token_to_row=dict(model.get("vocab") or {}), special_rows={}, described_by=tokenizer_json_path
            )
        else:
            raise ConversionError(
                f"{source_dir}: no WordPiece vocabulary; expected vocab.txt or a "
                f"{TOKENIZER_JSON_FILE} with a WordPiece model"
            )
        normalizer = bert_normalizer(tokenizer_json) if tokenizer_json else None
        if normalizer is not None and "lowercase" in normalizer:
            vocabulary.lowercase = bool(normalizer["lowercase"])
        elif "do_lower_case" in tokenizer_config:
            vocabulary.lowercase = bool(tokenizer_config["do_lower_case"])
        else:
            raise ConversionError(
                f"{source_dir}: cannot tell whether the WordPiece vocabulary is lowercased; expected "
                f"do_lower_case in {TOKENIZER_CONFIG_FILE} or a BertNormalizer in {TOKENIZER_JSON_FILE}"
            )
    else:
        vocab_json, merges_txt = source_dir / "vocab.json", source_dir / "merges.txt"
        if vocab_json.is_file() and merges_txt.is_file():
            token_to_row = read_json(vocab_json, "a byte-level BPE vocabulary (token -> id)")
            merges = merges_txt.read_text(encoding="utf-8").split("\n")
            described_by = vocab_json
        elif model.get("type") == "BPE":
            pre_tokenizer = (tokenizer_json.get("pre_tokenizer") or {}).get("type")
            if pre_tokenizer != "ByteLevel":
                raise ConversionError(
                    f"{tokenizer_json_path}: BPE with pre_tokenizer {pre_tokenizer!r}; expected "
                    "byte-level BPE (ByteLevel), which fairseq's GPT-2 encoder implements"
                )
            token_to_row = model.get("vocab")
            # tokenizers writes a merge as "a b" (older) or ["a", "b"] (newer)
            merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
            described_by = tokenizer_json_path
        else:
            raise ConversionError(
                f"{source_dir}: no byte-level BPE vocabulary; expected vocab.json and merges.txt, "
                f"or a {TOKENIZER_JSON_FILE} with a BPE model"
            )
        if not isinstance(token_to_row, dict) or not all(isinstance(i, int) for i in token_to_row.values()):
            raise ConversionError(f"{described_by}: expected a JSON object of token -> integer id")
        merges = [m for m in merges if m.strip() and not m.startswith("#version")]
        vocabulary = Vocabulary(
            token_to_row=dict(token_to_row), special_rows={}, described_by=described_by, merges=merges
        )

    added_tokens = {t.get("content"): t.get("id") for t in (tokenizer_json or {}).get("added_tokens", [])}
    for role, default in family.default_special_tokens.items():
        key = f"{role}_token"
        token = token_content(tokenizer_config.get(key)) or token_content(special_tokens_map.get(key)) or default
        row = vocabulary.token_to_row.get(token, added_tokens.get(token))
        if row is None:
            raise ConversionError(
                f"{vocabulary.described_by}: the {key} {token!r} is not in the vocabulary"
            )
        vocabulary.special_rows[role] = row
    return vocabulary

def fairseq_row_order(vocabulary: Vocabulary, family: Family, num_rows: int, weights_file: Path):
    """(source row of each fairseq index, dict.txt's tokens).

    fairseq index 0-3 = the source's CLS, PAD, SEP, UNK rows; then every other row in source
    order (one dict.txt line each); the MASK row last, where the task's ``<mask>`` lands.
    A WordPiece row is named by its token, a GPT-2 BPE row by its id (fairseq's GPT-2 encoder
    emits encoder.json ids as strings); a row no token reaches is a fairseq ``madeupword``.
    """
    specials = vocabulary.special_rows
    special_rows = [specials[role] for role in FAIRSEQ_SPECIAL_ROLES] + [specials["mask"]]
    if len(set(special_rows)) != len(special_rows):
        raise ConversionError(
            f"{vocabulary.described_by}: the special tokens share embedding rows "
            f"({specials}); expected distinct CLS, PAD, SEP, UNK and MASK rows"
        )
    beyond = sorted(t for t, row in vocabulary.token_to_row.items() if not 0 <= row < num_rows)
    beyond += [role for role, row in specials.items() if not 0 <= row < num_rows]
    if beyond:
        raise ConversionError(
            f"{vocabulary.described_by}: ids outside the {num_rows} embedding rows of "
            f"{weights_file} for {', '.join(map(repr, beyond[:10]))}"
            + (f" and {len(beyond) - 10} more" if len(beyond) > 10 else "")
        )
    token_of_row = {
        row: token if family.tokenizer == "wordpiece" else str(row)
        for token, row in vocabulary.token_to_row.items()
    }
    ordinary_rows = sorted(set(range(num_rows)) - set(special_rows))
    tokens, unreached = [], 0
    for row in ordinary_rows:
        token = token_of_row.get(row)
        if token is None:
            token, unreached = f"madeupword{unreached:04d}", unreached + 1
        tokens.append(token)
    order = special_rows[:4] + ordinary_rows + special_rows[4:]
    return torch.tensor(order), tokens

def dict_txt_text(tokens: List[str]) -> str:
    return "".join(f"{token} 1\n" for token in tokens)

def check_dictionary(dict_txt: Path, tokens: List[str], num_rows: int, described_by: Path) -> None:
    """Load dict.txt as fairseq will and check every token lands on the index it was written for."""
    from fairseq.data import Dictionary

    try:
        dictionary = Dictionary.load(str(dict_txt))
    except (RuntimeError, ValueError) as error:
        raise ConversionError(f"{described_by}: its tokens do not make a valid fairseq dict.txt: {error}") from None
    dictionary.add_symbol("<mask>")  # as the masked_lm and sentence_prediction tasks do
    misplaced = [
        token for index, token in enumerate(tokens, start=dictionary.nspecial)
        if dictionary.index(token) != index
    ]
    if len(dictionary) != num_rows or misplaced:
        raise ConversionError(
            f"{described_by}: fairseq's Dictionary does not read its tokens back at their rows "
            f"({len(dictionary)} entries for {num_rows} rows; misplaced: "
            f"{', '.join(map(repr, misplaced[:10])) or 'none'}); tokens that clash with "
            "<s> <pad> </s> <unk> <mask> or hold whitespace cannot go into dict.txt"
        )
