"""Hub interface: offline from_pretrained, HIRE-aware predict, batched predict, layer weights.

fairseq's RobertaHubInterface.predict feeds the last layer's features straight to a head,
which would bypass HIRE; here every prediction goes through the model's forward, so the
same code path runs at training, validation and inference time. It works for stock
``roberta`` checkpoints too (the baseline), except ``layer_weights``.
"""
import functools
import logging
import os
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from fairseq.data import data_utils
from fairseq.models.roberta.hub_interface import RobertaHubInterface

from .checkpoints.errors import HeadMismatchError

logger = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_TOKENIZER_SPEC = PACKAGE_DIR / "assets" / "gpt2_bpe" / "tokenizer_spec.json"
SPEC_NAME = "tokenizer_spec.json"

Example = Union[str, Tuple[str, ...], List[str]]


class OverLengthError(ValueError):
    """An input longer than the model's positions; `index` is its place in the batch asked for."""

    def __init__(self, index: int, positions: int, limit: int):
        self.index, self.positions, self.limit = index, positions, limit
        super().__init__(f"example {index} takes {positions} positions, more than the model's max_positions="
                         f"{limit}; cut it longest sentence first (the hub's truncate=True, predict.py --truncate, "
                         "glue_prep --truncate-to at binarisation)")


def check_length(tokens: torch.LongTensor, limit: int, index: int = 0) -> None:
    if tokens.size(-1) > limit:
        raise OverLengthError(index, tokens.size(-1), limit)


def find_tokenizer_spec(model_dir: Path, data_dir: Path) -> Path:
    """The tokenizer the data was prepared with (glue_prep copies it into <TASK>-bin/tokenizer/),
    else one beside the checkpoint (the converter writes it), else RoBERTa's GPT-2 BPE."""
    for candidate in (data_dir / "tokenizer" / SPEC_NAME, data_dir / SPEC_NAME, model_dir / SPEC_NAME):
        if candidate.exists():
            return candidate
    return DEFAULT_TOKENIZER_SPEC


def from_pretrained(
    model_name_or_path: str,
    checkpoint_file: str = "model.pt",
    data_name_or_path: str = ".",
    bpe: Optional[str] = None,
    head: Optional[str] = None,
    **kwargs,
) -> "RobertaHireHubInterface":
    """Load a fine-tuned (or pre-trained) checkpoint without network access, through the safe
    loader (``checkpoint_io.load_checkpoint_to_cpu``), whose state fairseq's
    ``load_model_ensemble_and_task`` builds the model from.

    Args:
        model_name_or_path: folder holding the checkpoint.
        checkpoint_file: file name inside that folder.
        data_name_or_path: the task's binarised data (its dictionaries): absolute, relative
            to the current folder, or, starting with ".", to the checkpoint folder ("." = the
            checkpoint folder), as fairseq's from_pretrained reads it.
        bpe: a fairseq BPE name to override the tokenizer; by default the tokenizer is the
            one glue_prep recorded in the data folder, else GPT-2 BPE from the package's
            own files.
        head: refuse (HeadMismatchError) a checkpoint whose weights hold no classification
            head of this name, before fairseq sets up its task: a pre-trained model.pt given
            where a fine-tuned checkpoint is expected (the scripts pass theirs).
        kwargs: further overrides of the checkpoint's configuration.
    The model is returned in eval mode.
    """
    from fairseq import checkpoint_utils

    from .checkpoints.loading import load_checkpoint_to_cpu
    from .checkpoints.head_classes import record_or_check
    from .checkpoints.shapes import HEAD_PREFIX, head_shapes, untrained_heads
    from .models.layer_cache import drop_layer_cache
    from .models.layernorm_eps import apply_recorded_eps

    model_dir = Path(model_name_or_path)
    data_dir = Path(data_name_or_path)
    if not data_dir.is_absolute() and data_name_or_path.startswith("."):
        data_dir = model_dir / data_dir
    if bpe is None:
        bpe = "hire_tokenizer"
        kwargs.setdefault("hire_tokenizer_spec", str(find_tokenizer_spec(model_dir, data_dir)))
    # the overrides fairseq's hub_utils.from_pretrained passes for a local folder
    data = os.path.abspath(data_dir) if data_name_or_path.startswith(".") else data_name_or_path
    overrides = {**kwargs, "bpe": bpe, "load_checkpoint_heads": True, "user_dir": str(PACKAGE_DIR), "data": data}
    path = str(model_dir / checkpoint_file)
    state = load_checkpoint_to_cpu(path, overrides)
    stored_heads = head_shapes(state["model"])  # fairseq's upgrade rewrites the state's heads as it loads
    if head is not None and not any(key.startswith(f"{HEAD_PREFIX}{head}.") for key in stored_heads):
        raise HeadMismatchError(f"refusing to predict with checkpoint {path}: its weights hold no {head!r} head (a "
                                "pre-trained model.pt?); expected a checkpoint fine-tuned for a sentence-prediction "
                                "task (scripts/finetune.py, fairseq-train)")
    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([path], arg_overrides=overrides, state=state)
    apply_recorded_eps(models[0])  # fairseq's roberta builds 1e-5 whatever the checkpoint records
    drop_layer_cache(models[0])  # done by the plugin's task too; fairseq's sentence_prediction does not
    record_or_check(task)  # done by the plugin's task when it built the model; fairseq's does not
    untrained = {name: (models[0].classification_heads[name], keys)
                 for name, keys in untrained_heads(models[0], stored_heads).items()}
    hub = RobertaHireHubInterface(cfg, task, models[0], untrained, path)
    return hub.eval()


class RobertaHireHubInterface(RobertaHubInterface):
    def __init__(self, cfg, task, model, untrained_heads: Optional[Dict[str, Tuple[torch.nn.Module, List[str]]]] = None,
                 checkpoint: Optional[str] = None):
        """`untrained_heads`: the heads the checkpoint's weights do not hold as its configuration
        builds them (name -> the head module and its parameters), refused at prediction while
        that module is the model's head of that name: a head registered after loading, under
        any name, is the caller's own."""
        super().__init__(cfg, task, model)
        self.untrained_heads = untrained_heads or {}
        self.checkpoint = checkpoint

    def encode(self, sentence: str, *addl_sentences: str, no_separator: bool = False) -> torch.LongTensor:
        """RoBERTa's encoding (``<s> A </s> </s> B </s>``) of the text stripped of surrounding
        whitespace, as glue_prep (and fairseq's recipe) strip it before binarising."""
        return super().encode(sentence.strip(), *(s.strip() for s in addl_sentences), no_separator=no_separator)

    def _classify(self, head: str, tokens: torch.LongTensor):
        module, keys = self.untrained_heads.get(head, (None, []))
        heads = self.model.classification_heads
        if module is not None and head in heads and heads[head] is module:
            raise HeadMismatchError(
                f"refusing to predict with head {head!r} of checkpoint {self.checkpoint}: its configuration builds "
                f"{', '.join(keys[:3])}{f' and {len(keys) - 3} more' if len(keys) > 3 else ''} otherwise than its "
                "weights hold them (or they are not there), so they would be freshly initialised; expected the head "
                "options (--hire-*, num_classes) it was trained with")
        if tokens.dim() == 1:
            tokens = tokens.unsqueeze(0)
        check_length(tokens, self.model.max_positions())
        self.check_sentences(tokens)
        return self.model(tokens.to(device=self.device), classification_head_name=head)

    def check_sentences(self, tokens: torch.LongTensor) -> None:
        """Refuse rows of another number of sentences than the task's: k sentences encoded as
        RoBERTa encodes them (``<s> A </s> </s> B </s>``, empty sentences included) hold 2k - 1
        ``</s>``. A pair task fed one sentence would predict, wrongly."""
        expected = self.sentences_per_example
        if expected is None:
            return
        counts = tokens.eq(self.task.source_dictionary.eos()).sum(dim=1).tolist()
        for row, count in enumerate(counts):
            if count != 2 * expected - 1:
                raise ValueError(f"row {row} of the tokens holds {count} </s>, {(count + 1) / 2:g} sentence(s) as "
                                 f"hub.encode writes them; the task of {self.task.cfg.data} takes {expected} "
                                 f"(its glue_prep.json's num_inputs): encode the example as hub.encode(*sentences)")

    def predict(self, head: str, tokens: torch.LongTensor, return_logits: bool = False):
        """Log-probabilities (or logits) of `head` for tokens (T or B x T, padded with
        the dictionary's pad), through HIRE when the head is a HIRE head."""
        logits, _ = self._classify(head, tokens)
        return logits if return_logits else F.log_softmax(logits, dim=-1)

    def layer_weights(self, tokens: torch.LongTensor, head: Optional[str] = None) -> torch.Tensor:
        """HIRE's layer weights alpha: (J,) for one sequence, B x J for a padded batch."""
        head = head or self.default_head()
        with torch.no_grad():
            _, extra = self._classify(head, tokens)
        if extra.get("layer_weights") is None:
            raise ValueError(f"head {head!r} is not a HIRE head: it has no layer weights")
        alpha = extra["layer_weights"]
        return alpha[0] if tokens.dim() == 1 else alpha

    @functools.cached_property  # read once, not at every batch call
    def sentences_per_example(self) -> Optional[int]:
        """How many sentences an example of the task holds (glue_prep.json's num_inputs); None
        for data glue_prep did not make (fairseq's own recipe's)."""
        from glue_prep.metadata import metadata_file, read_metadata

        data = getattr(self.task.cfg, "data", None)
        if not data or not metadata_file(data).is_file():
            return None
        return read_metadata(data).num_inputs

    def default_head(self) -> str:
        names = list(self.model.classification_heads.keys())
        if len(names) != 1:
            raise ValueError(f"the model has heads {names}: name the one to use")
        return names[0]

    def encode_example(self, example: Example, truncate: Union[bool, int] = False) -> torch.LongTensor:
        """A sentence or sentence pair as the model reads it. With `truncate` (True: to the
        model's positions; a number: to that many), a longer row is cut longest sentence first,
        exactly as glue_prep --truncate-to cuts it (``glue_prep.lengths``)."""
        from glue_prep.lengths import longest_first, positions

        sentences = [s.strip() for s in ((example,) if isinstance(example, str) else example)]
        if not truncate:
            return self.encode(*sentences)
        limit = self.model.max_positions() if truncate is True else min(int(truncate), self.model.max_positions())
        dictionary = self.task.source_dictionary
        pieces = [dictionary.encode_line(self.bpe.encode(s), append_eos=False, add_if_not_exist=False).long()
                  for s in sentences]
        lengths = [len(p) for p in pieces]
        if positions(lengths) > limit:
            lengths = longest_first(lengths, limit)
        parts = [torch.tensor([dictionary.bos()])]
        for k, (piece, keep) in enumerate(zip(pieces, lengths)):
            parts += ([torch.tensor([dictionary.eos()])] if k else []) + [piece[:keep], torch.tensor([dictionary.eos()])]
        return torch.cat(parts)

    def classify_batch(
        self,
        head: str,
        examples: Sequence[Example],
        max_sentences: int = 32,
        max_tokens: int = 8192,
        truncate: Union[bool, int] = False,
        on_batch: Optional[Callable[[int], None]] = None,
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Logits (N x K) and layer weights (N x J, or None for a stock RoBERTa head) of many
        sentences or sentence pairs, in input order.

        Examples are sorted by length and grouped into batches of at most `max_sentences`
        examples and `max_tokens` tokens including padding, so that almost no work is done
        on padding (HIRE's GRUs do none at all). The results equal one-at-a-time predict.
        An example longer than the model's positions is refused with an OverLengthError naming
        it, unless `truncate` cuts it (``encode_example``). `on_batch` is told the size of every
        batch done (a progress bar's update).
        """
        if isinstance(examples, str):
            raise TypeError("examples must be a list of sentences or sentence pairs, not one string "
                            "(it would be read as one example per character): pass [text]")
        expected = self.sentences_per_example
        for i, example in enumerate(examples):
            given = 1 if isinstance(example, str) else len(example)
            if expected is not None and given != expected:  # a pair task fed one sentence predicts, wrongly
                raise ValueError(f"example {i} holds {given} sentence(s); the task of {self.task.cfg.data} takes "
                                 f"{expected} (its glue_prep.json's num_inputs)")
        tokens = [self.encode_example(example, truncate) for example in examples]
        for i, row in enumerate(tokens):
            check_length(row, self.model.max_positions(), index=i)
        order = sorted(range(len(tokens)), key=lambda i: len(tokens[i]))
        pad = self.task.source_dictionary.pad()
        logits: List[Optional[torch.Tensor]] = [None] * len(tokens)
        weights: List[Optional[torch.Tensor]] = [None] * len(tokens)
        start = 0
        with torch.no_grad():
            while start < len(order):
                end = start + 1
                while (
                    end < len(order)
                    and end - start < max_sentences
                    and (end - start + 1) * len(tokens[order[end]]) <= max_tokens
                ):
                    end += 1
                batch = data_utils.collate_tokens([tokens[i] for i in order[start:end]], pad)
                batch_logits, extra = self._classify(head, batch)
                alpha = extra.get("layer_weights") if isinstance(extra, dict) else None
                for k, i in enumerate(order[start:end]):
                    logits[i] = batch_logits[k].cpu()
                    weights[i] = None if alpha is None else alpha[k].cpu()
                if on_batch is not None:
                    on_batch(end - start)
                start = end
        if not logits:
            num_classes = self.model.classification_heads[head].out_proj.out_features
            return torch.empty(0, num_classes), None
        alphas = None if weights[0] is None else torch.stack(weights)
        return torch.stack(logits), alphas

    def predict_batch(
        self,
        head: str,
        examples: Sequence[Example],
        max_sentences: int = 32,
        max_tokens: int = 8192,
        return_logits: bool = False,
        truncate: Union[bool, int] = False,
    ) -> torch.Tensor:
        """Predict many sentences or sentence pairs: N x K log-probabilities (or logits) in
        input order, batched as ``classify_batch`` does; equal to one-at-a-time predict."""
        logits, _ = self.classify_batch(head, examples, max_sentences, max_tokens, truncate)
        return logits if return_logits else F.log_softmax(logits, dim=-1)
