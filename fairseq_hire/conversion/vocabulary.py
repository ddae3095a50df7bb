"""The source tokenizer's vocabulary, and the fairseq dictionary (dict.txt) that gives every
fairseq index the source's embedding row for its token."""
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import torch

from glue_prep.tokenizers import TokenizerFileError, check_gpt2_tables

from .errors import ConversionError
from .source import Family, SourceFolder, flag, listed, shown

TOKENIZER_JSON_FILE = "tokenizer.json"

TOKENIZER_CONFIG_FILE = "tokenizer_config.json"

SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"

FAIRSEQ_SPECIAL_ROLES = ("cls", "pad", "sep", "unk")  # the source tokens taking indices 0-3

# BertNormalizer option (tokenizer.json) -> (tokenizer_config.json's name, transformers' BertTokenizer
# default). transformers' BertTokenizer (4.x fast and 5.x) builds its normalizer from the
# tokenizer_config.json values, defaults where absent, whatever tokenizer.json says; the tokenizers
# library's own loaders, and transformers' generic class, read tokenizer.json's.
WORDPIECE_OPTIONS = {
    "lowercase": ("do_lower_case", True),
    "strip_accents": ("strip_accents", None),  # None: follows lowercase
    "handle_chinese_chars": ("tokenize_chinese_chars", True),
}
GENERIC_TOKENIZER_CLASSES = ("PreTrainedTokenizerFast", "TokenizersBackend")  # tokenizer.json as it is

@dataclass
class Vocabulary:
    """The source tokenizer's vocabulary and the embedding rows of its special tokens."""

    token_to_row: Dict[str, int]
    special_rows: Dict[str, int]  # role (cls, pad, sep, unk, mask) -> embedding row
    described_by: Path  # the file the vocabulary came from, for error messages
    spec_options: Dict[str, bool] = field(default_factory=dict)  # tokenizer_spec.json's (WordPiece: lowercase first)
    merges: Optional[List[str]] = None  # GPT-2 BPE only, without the #version header
    vocab_txt: Optional[bytes] = None  # WordPiece vocab.txt as read, to copy byte for byte

def json_object_field(data: dict, key: str, path: Path) -> dict:
    """data[key] when it is a JSON object, {} when absent or null."""
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConversionError(f"{path}: {key!r} should be a JSON object, got {shown(value)}")
    return value

def token_content(token, key: str, path: Path) -> Optional[str]:
    """A special token as tokenizer_config.json writes it: a string or an AddedToken dict."""
    content = token.get("content") if isinstance(token, dict) else token
    if content is not None and not isinstance(content, str):
        raise ConversionError(
            f"{path}: {key} should be a string or an object with a string 'content', got {shown(token)}"
        )
    return content

def token_ids(vocab, path: Path) -> Dict[str, int]:
    """A JSON vocabulary, checked to map tokens to integer ids."""
    if not isinstance(vocab, dict):
        raise ConversionError(f"{path}: expected a JSON object of token -> integer id, got {shown(vocab)}")
    for token, row in vocab.items():
        if isinstance(row, bool) or not isinstance(row, int):
            raise ConversionError(
                f"{path}: expected a JSON object of token -> integer id; {shown(token)} has {shown(row)}"
            )
    return dict(vocab)

def merge_text(merge):
    """A tokenizer.json merge as a merges.txt line: tokenizers writes "a b" (older) or ["a", "b"] (newer)."""
    if isinstance(merge, list) and all(isinstance(token, str) for token in merge):
        return " ".join(merge)
    return merge

def merge_pairs(merges: list, path: Path, where) -> List[str]:
    """BPE merges, checked to be "a b" lines; where(i) says where the i-th is, for the error."""
    for i, merge in enumerate(merges):
        if not isinstance(merge, str) or len(merge.split(" ")) != 2 or "" in merge.split(" "):
            raise ConversionError(f"{path}: {where(i)}: expected two tokens separated by a space (a BPE merge), "
                                  f"got {shown(merge)}")
    return merges

def added_token_ids(tokenizer_json: dict, path: Path) -> Dict[str, int]:
    added = tokenizer_json.get("added_tokens") or []
    if not isinstance(added, list) or not all(
        isinstance(t, dict) and isinstance(t.get("content"), str) and isinstance(t.get("id"), int) for t in added
    ):
        raise ConversionError(
            f"{path}: added_tokens should be a list of objects with a string 'content' and an integer 'id'"
        )
    return {t["content"]: t["id"] for t in added}

def bert_normalizer(tokenizer_json: dict, path: Path) -> Optional[dict]:
    normalizer = json_object_field(tokenizer_json, "normalizer", path)
    sequence = normalizer.get("normalizers") or []
    if not isinstance(sequence, list) or not all(isinstance(n, dict) for n in sequence):
        raise ConversionError(f"{path}: normalizer.normalizers should be a list of JSON objects")
    for candidate in [normalizer, *sequence]:
        if candidate.get("type") == "BertNormalizer":
            return candidate
    return None

def normalizer_setting(value, key: str, path: Path, nullable: bool):
    return None if value is None and nullable else flag(value, key, path)


def wordpiece_options(normalizer: Optional[dict], tokenizer_config: dict, tokenizer_json_path: Path,
                      tokenizer_config_path: Path) -> Dict[str, bool]:
    """The spec's options: lowercase, and every other BertNormalizer setting that is not its
    default, as transformers' tokenizer of the source applies them. Where tokenizer.json says
    otherwise than what transformers' BertTokenizer takes, the tokenizers library and transformers
    give different tokens: refused, naming both, rather than guessed."""
    generic = tokenizer_config.get("tokenizer_class") in GENERIC_TOKENIZER_CLASSES
    normalizer = normalizer or {}
    settings: Dict[str, Optional[bool]] = {}
    for option, (config_key, default) in WORDPIECE_OPTIONS.items():
        nullable = default is None
        stated = option in normalizer
        in_json = normalizer_setting(normalizer[option], option, tokenizer_json_path, nullable) if stated else None
        if generic or (not stated and config_key not in tokenizer_config):
            if option == "lowercase" and not stated:
                raise ConversionError(
                    f"{tokenizer_config_path.parent}: cannot tell whether the WordPiece vocabulary is lowercased; "
                    f"expected do_lower_case in {TOKENIZER_CONFIG_FILE} or a BertNormalizer in {TOKENIZER_JSON_FILE}")
            settings[option] = in_json if stated else default
            continue
        if config_key in tokenizer_config:
            value = normalizer_setting(tokenizer_config[config_key], config_key, tokenizer_config_path, nullable)
            source = f"{tokenizer_config_path} sets {config_key} {shown(value)}"
        else:
            value = default
            source = f"{tokenizer_config_path} has no {config_key} (default {shown(default)})"
        effective = (lambda v: settings["lowercase"] if v is None else v) if nullable else (lambda v: v)
        if stated and effective(in_json) != effective(value):
            raise ConversionError(f"{tokenizer_json_path}: normalizer {option} {shown(in_json)}, but {source}, which "
                                  "transformers' BertTokenizer uses; expected the two files to agree")
        settings[option] = value
    clean_text = normalizer_setting(normalizer.get("clean_text", True), "clean_text", tokenizer_json_path, False)
    if not clean_text and not generic:
        raise ConversionError(f"{tokenizer_json_path}: normalizer clean_text false, which transformers 5's "
                              "BertTokenizer ignores (it always cleans the text); expected true")
    options = {"lowercase": settings["lowercase"]}
    for option in ("strip_accents", "handle_chinese_chars"):
        default = WORDPIECE_OPTIONS[option][1]
        if settings[option] is not None and settings[option] != (settings["lowercase"] if default is None else default):
            options[option] = settings[option]
    return options if clean_text else {**options, "clean_text": False}

def byte_level_pre_tokenizer(tokenizer_json: dict, path: Path) -> dict:
    """tokenizer.json's ByteLevel pre-tokenizer (also as the one step of a Sequence), {} where the
    file has none; any other pre-tokenizer splits text otherwise than fairseq's GPT-2 encoder."""
    pre_tokenizer = json_object_field(tokenizer_json, "pre_tokenizer", path)
    if pre_tokenizer.get("type") == "Sequence":
        steps = pre_tokenizer.get("pretokenizers")
        if not (isinstance(steps, list) and len(steps) == 1 and isinstance(steps[0], dict)):
            raise ConversionError(f"{path}: pre_tokenizer Sequence of {shown(steps)}; expected ByteLevel alone "
                                  "(the byte-level BPE fairseq's GPT-2 encoder implements)")
        pre_tokenizer = steps[0]
    if pre_tokenizer and pre_tokenizer.get("type") != "ByteLevel":
        raise ConversionError(f"{path}: pre_tokenizer {shown(pre_tokenizer.get('type'))}; expected ByteLevel "
                              "(the byte-level BPE fairseq's GPT-2 encoder implements)")
    return pre_tokenizer


def byte_level_options(tokenizer_json: dict, tokenizer_config: dict, tokenizer_json_path: Path,
                       tokenizer_config_path: Path) -> Dict[str, bool]:
    """The spec's options for byte-level BPE ({"add_prefix_space": True}: a space before each text
    that does not start with one, as the tokenizers library's ByteLevel pre-tokenizer adds), as
    transformers applies them: RobertaTokenizer takes add_prefix_space from tokenizer_config.json
    (default false) whatever tokenizer.json says, the generic class from tokenizer.json; files that
    disagree are refused, naming both. Refused too what fairseq's GPT-2 encoder does not do: a
    pre-tokenizer without GPT-2's splitting regex, a normalizer."""
    pre_tokenizer = byte_level_pre_tokenizer(tokenizer_json, tokenizer_json_path)
    stated = "add_prefix_space" in pre_tokenizer
    in_json = flag(pre_tokenizer["add_prefix_space"], "pre_tokenizer.add_prefix_space",
                   tokenizer_json_path) if stated else None
    tokenizer_class = tokenizer_config.get("tokenizer_class")
    if tokenizer_class in GENERIC_TOKENIZER_CLASSES:
        prefix_space = bool(in_json)
    else:
        in_config = "add_prefix_space" in tokenizer_config
        prefix_space = flag(tokenizer_config["add_prefix_space"], "add_prefix_space",
                            tokenizer_config_path) if in_config else False
        if stated and in_json != prefix_space:
            source = (f"{tokenizer_config_path} sets add_prefix_space {json.dumps(prefix_space)}" if in_config
                      else f"{tokenizer_config_path} has no add_prefix_space (default false)")
            raise ConversionError(f"{tokenizer_json_path}: pre_tokenizer.add_prefix_space {json.dumps(in_json)}, but "
                                  f"{source}, which transformers' {tokenizer_class or 'RobertaTokenizer'} uses; "
                                  "expected the two files to agree")
    if not flag(pre_tokenizer.get("use_regex", True), "pre_tokenizer.use_regex", tokenizer_json_path):
        raise ConversionError(f"{tokenizer_json_path}: pre_tokenizer.use_regex is false; expected true "
                              "(fairseq's GPT-2 encoder always splits with GPT-2's pattern)")
    if tokenizer_json.get("normalizer") is not None:
        raise ConversionError(f"{tokenizer_json_path}: normalizer {shown(tokenizer_json['normalizer'])}; expected "
                              "null (fairseq's GPT-2 encoder normalizes nothing)")
    return {"add_prefix_space": True} if prefix_space else {}

def read_vocabulary(folder: SourceFolder, family: Family) -> Vocabulary:
    source_dir = folder.path
    tokenizer_json_path = source_dir / TOKENIZER_JSON_FILE
    tokenizer_config_path = source_dir / TOKENIZER_CONFIG_FILE
    special_tokens_map_path = source_dir / SPECIAL_TOKENS_MAP_FILE
    tokenizer_json = folder.json_object(TOKENIZER_JSON_FILE, "a tokenizers tokenizer.json", required=False) or {}
    tokenizer_config = folder.json_object(TOKENIZER_CONFIG_FILE, "a tokenizer config", required=False) or {}
    special_tokens_map = folder.json_object(SPECIAL_TOKENS_MAP_FILE, "a special tokens map", required=False) or {}
    model = json_object_field(tokenizer_json, "model", tokenizer_json_path)

    if family.tokenizer == "wordpiece":
        if folder.has("vocab.txt"):
            what = "a WordPiece vocabulary (one token a line)"
            vocab_txt = folder.read_bytes("vocab.txt", what)
            lines = folder.decoded("vocab.txt", vocab_txt, what).split("\n")
            if lines[-1] == "":
                lines.pop()
            # later duplicates win, as in HF's and the tokenizers library's vocab loading
            vocabulary = Vocabulary(
                token_to_row={token: row for row, token in enumerate(lines)}, special_rows={},
                described_by=source_dir / "vocab.txt", vocab_txt=vocab_txt,
            )
        elif model.get("type") == "WordPiece":
            if model.get("continuing_subword_prefix", "##") != "##":
                raise ConversionError(
                    f"{tokenizer_json_path}: WordPiece continuing_subword_prefix "
                    f"{shown(model['continuing_subword_prefix'])}; expected '##' (BERT's)"
                )
            vocabulary = Vocabulary(
                token_to_row=token_ids(model.get("vocab"), tokenizer_json_path), special_rows={},
                described_by=tokenizer_json_path,
            )
        else:
            raise ConversionError(
                f"{source_dir}: no WordPiece vocabulary; expected vocab.txt or a "
                f"{TOKENIZER_JSON_FILE} with a WordPiece model"
            )
        if model.get("max_input_chars_per_word", 100) != 100:
            raise ConversionError(
                f"{tokenizer_json_path}: WordPiece max_input_chars_per_word "
                f"{shown(model['max_input_chars_per_word'])}; expected 100 (BertWordPieceTokenizer's)"
            )
        pre_tokenizer = json_object_field(tokenizer_json, "pre_tokenizer", tokenizer_json_path)
        if pre_tokenizer and pre_tokenizer.get("type") != "BertPreTokenizer":
            raise ConversionError(f"{tokenizer_json_path}: pre_tokenizer {shown(pre_tokenizer.get('type'))}; "
                                  "expected BertPreTokenizer (BertWordPieceTokenizer's)")
        normalizer = bert_normalizer(tokenizer_json, tokenizer_json_path)
        vocabulary.spec_options = wordpiece_options(normalizer, tokenizer_config, tokenizer_json_path,
                                                         tokenizer_config_path)
    else:
        options = byte_level_options(tokenizer_json, tokenizer_config, tokenizer_json_path, tokenizer_config_path)
        if folder.has("vocab.json") and folder.has("merges.txt"):
            described_by = source_dir / "vocab.json"
            token_to_row = token_ids(folder.read_json("vocab.json", "a byte-level BPE vocabulary (token -> id)"),
                                     described_by)
            lines = folder.read_text("merges.txt", "byte-level BPE merges (two tokens a line)").split("\n")
            numbered = [(number, line) for number, line in enumerate(lines, start=1)
                        if line.strip() and not line.startswith("#version")]
            merges = merge_pairs([line for _, line in numbered], source_dir / "merges.txt",
                                 lambda i: f"line {numbered[i][0]}")
            table_names = ("vocab.json", "merges.txt")
        elif model.get("type") == "BPE":
            if not byte_level_pre_tokenizer(tokenizer_json, tokenizer_json_path):
                raise ConversionError(
                    f"{tokenizer_json_path}: BPE with no pre_tokenizer; expected byte-level BPE (ByteLevel), "
                    "which fairseq's GPT-2 encoder implements"
                )
            described_by = tokenizer_json_path
            token_to_row = token_ids(model.get("vocab"), described_by)
            merges = model.get("merges") or []
            if not isinstance(merges, list):
                raise ConversionError(f"{described_by}: model.merges should be a list, got {shown(merges)}")
            merges = merge_pairs(list(map(merge_text, merges)), described_by, lambda i: f"model.merges[{i}]")
            table_names = ("model.vocab", "model.merges")
        else:
            raise ConversionError(
                f"{source_dir}: no byte-level BPE vocabulary; expected vocab.json and merges.txt, "
                f"or a {TOKENIZER_JSON_FILE} with a BPE model"
            )
        try:  # glue_prep's own check of the encoder.json / vocab.bpe the conversion will write
            check_gpt2_tables(token_to_row, [tuple(merge.split()) for merge in merges], *table_names)
        except TokenizerFileError as error:
            raise ConversionError(f"{described_by}: {error}; expected a byte-level BPE vocabulary "
                                  "(fairseq's GPT-2 encoder)") from None
        vocabulary = Vocabulary(token_to_row=token_to_row, special_rows={}, described_by=described_by, merges=merges,
                                spec_options=options)

    added_tokens = added_token_ids(tokenizer_json, tokenizer_json_path)
    for role, default in family.default_special_tokens.items():
        key = f"{role}_token"
        token = (token_content(tokenizer_config.get(key), key, tokenizer_config_path)
                 or token_content(special_tokens_map.get(key), key, special_tokens_map_path) or default)
        row = vocabulary.token_to_row.get(token, added_tokens.get(token))
        if row is None:
            raise ConversionError(
                f"{vocabulary.described_by}: the {key} {shown(token)} is not in the vocabulary"
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
            f"{weights_file} for {listed(map(shown, beyond))}"
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
            f"{listed(map(shown, misplaced)) or 'none'}); tokens that clash with "
            "<s> <pad> </s> <unk> <mask> or hold whitespace cannot go into dict.txt"
        )
