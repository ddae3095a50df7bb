"""Running a converted checkpoint beside transformers on the same real GLUE text, for
tests/test_convert_hf_checkpoint.py: the converted model is built the way fine-tuning builds it
(fairseq-train's parser with the checkpoint's architecture flags, Trainer, --restore-file with a
strict load), its input tokenized with the converted tokenizer files; compare() returns the
largest differences of the hidden states (and LM logits) at the real positions."""
import json
import shutil
from pathlib import Path

import torch
import transformers
from fairseq.data import data_utils
from tokenizers import BertWordPieceTokenizer

from conftest import real_glue_task_dir
from fairseq_hire.checkpoints.architecture import architecture_flags
from fairseq_setup import build_trainer, finetune_args, restore
from glue_prep.tokenizers import load_tokenizer


def glue_examples():
    """Real GLUE text: RTE pairs and SST-2 single sentences, each set with a non-ASCII one."""
    def rows(task, columns):
        path = real_glue_task_dir(task) / "dev.tsv"
        lines = path.read_text(encoding="utf-8-sig").splitlines()[1:]
        return [tuple(line.split("\t")[c].strip() for c in columns) for line in lines]

    def pick(examples):
        non_ascii = next(e for e in examples if any(ord(ch) > 127 for ch in "".join(e)))
        return examples[:2] + [non_ascii]

    return pick(rows("SST-2", [0])) + pick(rows("RTE", [1, 2]))


def finetuning_model(out_dir: Path, work_dir: Path, variant="hire"):
    """The converted checkpoint as `fairseq-train --restore-file model.pt` builds it for a
    sentence-pair task whose input dictionaries are the converted dict.txt: as roberta_hire
    ("hire"), roberta_hire with fairseq's RoBERTa head ("stock-head", the comparison's baseline)
    or fairseq's own roberta ("fairseq-roberta", with the flags it takes)."""
    from fairseq_hire.modules.options import HEADS

    data_dir = work_dir / "task-bin"
    for name in ("input0", "input1"):
        (data_dir / name).mkdir(parents=True, exist_ok=True)
        shutil.copy(out_dir / "dict.txt", data_dir / name / "dict.txt")
    (data_dir / "label").mkdir(exist_ok=True)
    (data_dir / "label" / "dict.txt").write_text("0 10\n1 10\n")
    model_pt = out_dir / "model.pt"
    arch = "roberta_base" if variant == "fairseq-roberta" else "roberta_hire_base"
    flags = architecture_flags(model_pt, for_stock_roberta=variant == "fairseq-roberta")
    head = HEADS["stock"].options.flags() if variant == "stock-head" else []
    args = finetune_args(data_dir, arch=arch, extra=flags + head)
    trainer = build_trainer(args)
    restore(trainer, model_pt)
    return trainer.model.eval(), trainer.task.source_dictionary


def fairseq_line(tokenize, example) -> str:
    """RoBERTa's input layout: <s> A </s> or <s> A </s> </s> B </s>."""
    segments = [tokenize(text) for text in example]
    return "<s> " + " </s> </s> ".join(segments) + " </s>"


def hf_ids(hf_tokenizer, example):
    """The same layout in HF ids: [CLS] A [SEP] ([SEP] B [SEP]); <s> A </s> (</s> B </s>)."""
    cls, sep = hf_tokenizer.cls_token_id, hf_tokenizer.sep_token_id
    ids = [cls]
    for i, text in enumerate(example):
        ids += ([sep] if i else []) + hf_tokenizer(text, add_special_tokens=False)["input_ids"] + [sep]
    return ids


def hf_row_of_fairseq_index(dictionary, hf_tokenizer, kind: str) -> torch.Tensor:
    """For each fairseq index, the HF id (embedding row) of the same token, worked out from
    dict.txt's symbols and the HF tokenizer alone."""
    specials = {
        "<s>": hf_tokenizer.cls_token_id, "<pad>": hf_tokenizer.pad_token_id,
        "</s>": hf_tokenizer.sep_token_id, "<unk>": hf_tokenizer.unk_token_id,
        "<mask>": hf_tokenizer.mask_token_id,
    }
    rows = []
    for index in range(len(dictionary)):
        symbol = dictionary[index]
        if symbol in specials:
            rows.append(specials[symbol])
        elif kind == "gpt2":
            rows.append(int(symbol))
        else:
            rows.append(hf_tokenizer.convert_tokens_to_ids(symbol))
    return torch.tensor(rows)


def compare(source_dir: Path, out_dir: Path, work_dir: Path, hf_model, kind: str, with_logits=False,
            variant="hire"):
    """Run both models on real GLUE examples; return the max abs differences of the final
    hidden states (and LM logits) at real (non-pad) positions, and the fairseq model."""
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(source_dir)
    model, dictionary = finetuning_model(out_dir, work_dir, variant)
    spec = json.loads((out_dir / "tokenizer_spec.json").read_text())
    if kind == "wordpiece":
        assert spec == {"type": "wordpiece", "vocab": "vocab.txt", "lowercase": True}
        wordpiece = BertWordPieceTokenizer(str(out_dir / spec["vocab"]), lowercase=spec["lowercase"])
        def tokenize(text):
            return " ".join(wordpiece.encode(text, add_special_tokens=False).tokens)
    else:
        assert spec == {"type": "gpt2", "encoder_json": "encoder.json", "vocab_bpe": "vocab.bpe"}
        from fairseq.data.encoders.gpt2_bpe_utils import get_encoder

        bpe = get_encoder(str(out_dir / spec["encoder_json"]), str(out_dir / spec["vocab_bpe"]))
        def tokenize(text):
            return " ".join(map(str, bpe.encode(text)))

    rows = hf_row_of_fairseq_index(dictionary, hf_tokenizer, kind)
    assert sorted(rows.tolist()) == list(range(len(dictionary))), "dict.txt is not a permutation of the HF rows"
    assert dictionary.index("<mask>") == len(dictionary) - 1 == len(rows) - 1
    assert rows[-1] == hf_tokenizer.mask_token_id

    glue_prep_tokenizer = load_tokenizer(out_dir / "tokenizer_spec.json")
    fairseq_ids, hf_sequences = [], []
    for example in glue_examples():
        # glue_prep (and the hub's hire_tokenizer) read the spec the same way
        assert [glue_prep_tokenizer.encode(text) for text in example] == [tokenize(text) for text in example]
        ids = dictionary.encode_line(fairseq_line(tokenize, example), append_eos=False, add_if_not_exist=False).long()
        expected = hf_ids(hf_tokenizer, example)
        # the converted tokenizer and dict.txt give the HF tokenizer's tokens
        assert hf_tokenizer.convert_ids_to_tokens(rows[ids].tolist()) == hf_tokenizer.convert_ids_to_tokens(expected)
        assert dictionary.unk() not in ids.tolist()
        fairseq_ids.append(ids)
        hf_sequences.append(torch.tensor(expected))
    src_tokens = data_utils.collate_tokens(fairseq_ids, dictionary.pad())
    input_ids = data_utils.collate_tokens(hf_sequences, hf_tokenizer.pad_token_id)
    real = src_tokens.ne(dictionary.pad())
    assert real.sum(1).min() < real.size(1), "the batch should have padding"

    hf_encoder = getattr(hf_model, "base_model", hf_model)
    with torch.no_grad():
        hf_out = hf_encoder(input_ids=input_ids, attention_mask=real.long(), token_type_ids=torch.zeros_like(input_ids))
        features, _ = model.encoder(src_tokens, features_only=True)
        diffs = {"hidden": (features[real] - hf_out.last_hidden_state[real]).abs().max().item()}
        if with_logits:
            logits, _ = model.encoder(src_tokens)
            hf_out = hf_model(input_ids=input_ids, attention_mask=real.long(), token_type_ids=torch.zeros_like(input_ids))
            # BertForPreTraining calls them prediction_logits
            hf_logits = (hf_out.logits if hasattr(hf_out, "logits") else hf_out.prediction_logits)[..., rows]
            diffs["logits"] = (logits[real] - hf_logits[real]).abs().max().item()
    return diffs, model
