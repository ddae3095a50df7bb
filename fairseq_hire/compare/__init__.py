"""Does a head beat the stock RoBERTa head on my encoder and task? A resumable comparison
of heads (``modules/options.HEADS``) over seeds, with per-example dev predictions and the
statistics to tell a real difference from seed noise.

    python -m fairseq_hire.compare TASK DATA_BIN PRETRAINED OUT --heads stock hire scalar-mix \\
        --seeds 1-10 --jobs 2 [--epochs 3 --lr 3e-5 ...]

``runs`` trains and scores one (head, seed) per result file; ``report`` turns the files into
report.md / report.json / plots; ``statistics`` holds the tests.
"""
