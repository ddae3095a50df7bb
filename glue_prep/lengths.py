"""How many positions a row takes in RoBERTa, and the one truncation policy that glue_prep
(``--truncate-to``) and the hub (``truncate=True``) share, so that inference cuts a long
input exactly where training did.

fairseq's sentence_prediction task feeds ``<s> A </s>`` or ``<s> A </s> </s> B </s>``: a row
of sentences with n_1 .. n_k tokens takes n_1 + ... + n_k + 2k positions. Truncation is
"longest first": one token at a time is removed from the end of the longest sentence (the
later one on a tie, as Hugging Face's longest_first does) until the row fits.
"""
from typing import List, Sequence


def positions(lengths: Sequence[int]) -> int:
    """Positions of a row whose sentences have these token counts (without specials)."""
    return sum(lengths) + 2 * len(lengths)


def longest_first(lengths: Sequence[int], max_positions: int) -> List[int]:
    """The sentence lengths after truncating the row to `max_positions`."""
    kept = list(lengths)
    budget = max_positions - 2 * len(kept)
    if budget < 0:
        raise ValueError(f"{max_positions} positions cannot hold a row of {len(kept)} sentences "
                         f"(it needs {2 * len(kept)} for <s> and </s> alone)")
    while sum(kept) > budget:
        longest = max(range(len(kept)), key=lambda i: (kept[i], i))
        kept[longest] -= 1
    return kept
