"""A frozen encoder's layer outputs, computed once per encoder and data set and reused by every
head, seed and epoch (``--layer-cache DIR``, which needs ``--freeze-encoder``).

With the encoder frozen (eval mode, no updates) an example's layer outputs never change, so a
run needs the encoder once per example, not once per example and epoch, and the runs of
other heads and seeds on the same encoder and data need it not at all.

What is stored. For each example, keyed by a digest of its ``src_tokens`` row without the
padding (so any batch, order, split or training subset that holds the row finds it), every
hidden state a head reads: ``inner_states`` (the embedding output and each layer's output,
L + 1 states) over the row's real tokens, float32. The final features are not stored: in
RoBERTa (post-LN) they are ``inner_states[-1]`` itself; an encoder with a final LayerNorm
(pre-LN) gets that LayerNorm applied to the cached last state. A lookup lays the rows back
into ``T x B x C`` at the positions of the batch's real tokens and zeros at its padding,
which no head reads (README: "Padding never changes a result"); results equal the uncached
run's within float rounding: a row encoded in another batch differs only by the rounding of
matrix products of other shapes (all-MiniLM-L6-v2, RTE dev batches: states by at most 9e-6,
HIRE's logits by 6e-8).

Where, and when it is built. ``DIR/<encoder fingerprint>/<entry>/``: the fingerprint is a
digest of the encoder's weights and structure (LayerNorm epsilons, activations, attention
heads, dtype), so a cache of another encoder is never read (its rows live in another folder and
are computed anew). At the first forward of a process (after fairseq has loaded the checkpoint), and
whenever the task loads another split, the rows of every split the task holds
(``task.datasets``, through each dataset's own collater, so the tokens are the training
ones) that no entry holds yet are encoded in batches and written as one new entry: built in
a temporary folder (``glue_prep.atomic``), renamed into place once complete, under a lock
(``fcntl.flock`` on ``<entry>.lock``), so that two processes that need the same rows build
them once and a reader never sees half an entry. Rows are encoded in the encoder's own dtype,
outside any autocast region the building run is in (fairseq's --amp), so an entry does not
depend on the run that built it. Rows longer than the encoder's positions
are left out (fairseq cannot run them either); a batch with a row not in the cache (the
hub, a split the task never loaded) runs the encoder, exactly as without the cache.

A damaged entry (missing or truncated file, metadata that does not match the arrays or the
encoder, a row whose states no longer match the checksum written with them) is refused with an
error naming it and saying to delete it; it is never used, nor silently rebuilt. Each row's
checksum is checked the first time a process reads the row (so a run pays for the rows it
reads, once), before its states reach a batch.

Memory and disk. ``states.npy`` holds tokens x (L + 1) x C float32 values and is memory-
mapped read-only: a lookup reads the batch's rows from it, one gather per batch, and the
pages stay in the OS page cache, shared by every process that reads the same entry. For
all-MiniLM-L6-v2 (6 layers, 384 dims) that is 7 x 384 x 4 = 10,752 bytes per token: RTE's
train + dev (2,767 rows, 196,358 tokens) take 1.97 GiB, MRPC's (4,076 rows, 221,090 tokens)
2.21 GiB, each built in ~70 s of one CPU core. Building holds one batch of states in memory
(at most ``BUILD_BATCH_TOKENS`` padded tokens). The entries of every task run on one encoder
share its folder; a process opens them all, which reads only their small index files.
"""
import fcntl
import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from glue_prep.atomic import remove_stale, temporary_name, write_atomically

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: index.npz holds each row's checksum
STATES_FILE = "states.npy"  # tokens x (L + 1) x C float32, each row's tokens consecutive
# digests: N x DIGEST_BYTES uint8; offsets: N + 1 int64 into states; checksums: N x DIGEST_BYTES
# uint8, a digest of each row's states as written
INDEX_FILE = "index.npz"
META_FILE = "meta.json"
DIGEST_BYTES = 16
BUILD_BATCH_TOKENS = 8192  # padded tokens per encoder batch while building
SCAN_ROWS = 512  # dataset rows collated at once while looking for missing rows


def drop_layer_cache(model) -> None:
    """Make a model loaded from a checkpoint run its encoder: the --layer-cache folder its
    configuration records is the training machine's, so it never decides where files are read or
    written (whichever task loads it: the plugin's, or fairseq's sentence_prediction)."""
    if getattr(model, "layer_cache", None) is not None:
        model.layer_cache = None


class LayerCacheError(ValueError):
    """A cache entry cannot be used; the message names it and says what to do."""


def check_layer_cache_folder(folder: Path) -> None:
    """Refuse a --layer-cache folder that is no folder, or that does not exist and cannot be made
    (finetune.py and the comparison before fairseq-train starts; a cache as it opens it). An
    existing folder this user cannot write to is accepted: a complete cache is only read."""
    existing = folder
    # lexists: a link to nothing is in the way of the folder, as a file is
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise LayerCacheError(f"--layer-cache {folder}: {existing} is not a folder; expected a folder for the "
                              "cache or a path where one can be made")
    if existing != folder and not os.access(existing, os.W_OK | os.X_OK):
        raise LayerCacheError(f"--layer-cache {folder}: {existing} is not writable, so the folder cannot be made "
                              "there; expected a folder for the cache or a path where one can be made")


def row_digest(tokens: torch.Tensor) -> bytes:
    """The key of one example: a digest of its real tokens (1-D, no padding)."""
    data = tokens.detach().to("cpu", torch.int64).contiguous().numpy().tobytes()
    return hashlib.blake2b(data, digest_size=DIGEST_BYTES).digest()


def states_checksum(states: np.ndarray) -> bytes:
    """The checksum of one row's states (its tokens x (L + 1) x C float32 values)."""
    return hashlib.blake2b(np.ascontiguousarray(states), digest_size=DIGEST_BYTES).digest()


def encoder_fingerprint(sentence_encoder: torch.nn.Module) -> str:
    """A digest of everything that decides the encoder's outputs: its structure (the module
    tree with every LayerNorm's epsilon, each layer's activation and LayerNorm placement, the
    embedding scale, each layer's number of attention heads, which no weight's shape shows) and
    every weight and buffer, with dtype and shape."""
    digest = hashlib.sha256(f"layer-cache {FORMAT_VERSION}\n{sentence_encoder!r}\n".encode())
    for layer in getattr(sentence_encoder, "layers", ()):
        activation = getattr(layer, "activation_fn", None)
        digest.update(f"{getattr(activation, '__qualname__', activation)!r} "
                      f"{getattr(layer, 'normalize_before', None)!r} "
                      f"heads {getattr(getattr(layer, 'self_attn', None), 'num_heads', None)!r}\n".encode())
    digest.update(f"embed_scale {getattr(sentence_encoder, 'embed_scale', None)!r}\n".encode())
    for name, tensor in sentence_encoder.state_dict().items():
        digest.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}\n".encode())
        digest.update(tensor.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def encode(sentence_encoder: torch.nn.Module, src_tokens: torch.Tensor) -> List[torch.Tensor]:
    """The encoder's L + 1 hidden states (T x B x C each), as fairseq's RobertaEncoder asks."""
    return sentence_encoder(src_tokens, return_all_hiddens=True)["encoder_states"]


@dataclass
class Entry:
    """One complete entry, opened read-only."""
    path: Path
    states: np.ndarray  # memory-mapped, tokens x (L + 1) x C float32
    digests: np.ndarray  # N x DIGEST_BYTES uint8
    offsets: np.ndarray  # N + 1 int64
    checksums: np.ndarray  # N x DIGEST_BYTES uint8

    def __post_init__(self):
        self.checked = np.zeros(len(self.digests), dtype=bool)  # rows this process found intact

    def check(self, starts: np.ndarray) -> None:
        """Refuse the entry if a row (given by its first token's position) does not match its checksum."""
        rows = np.searchsorted(self.offsets, starts)
        for row in np.unique(rows[~self.checked[rows]]).tolist():
            if states_checksum(self.states[self.offsets[row]:self.offsets[row + 1]]) != self.checksums[row].tobytes():
                raise LayerCacheError(f"layer cache {self.path / STATES_FILE}: the states of row {row} do not match "
                                      f"their checksum in {INDEX_FILE}; the entry is damaged: delete the folder "
                                      f"{self.path} to rebuild it")
            self.checked[row] = True


def open_entry(path: Path, fingerprint: str, num_states: int, embed_dim: int) -> Entry:
    """Open and check an entry; anything that does not fit is refused (LayerCacheError)."""
    def refuse(file: str, what: str):
        raise LayerCacheError(f"layer cache {path / file}: {what}; the entry is damaged or was "
                              f"written by something else: delete the folder {path} to rebuild it")

    try:
        meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        refuse(META_FILE, f"unreadable ({error})")
    expected = {"format": FORMAT_VERSION, "fingerprint": fingerprint, "states": num_states, "embed_dim": embed_dim}
    if not isinstance(meta, dict) or any(meta.get(k) != v for k, v in expected.items()):
        refuse(META_FILE, f"expected {expected}, found {meta!r}"[:500])
    try:
        with np.load(path / INDEX_FILE, allow_pickle=False) as index:
            digests, offsets, checksums = index["digests"], index["offsets"], index["checksums"]
        states = np.load(path / STATES_FILE, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, KeyError, EOFError) as error:
        refuse(f"{INDEX_FILE} or {STATES_FILE}", f"unreadable ({error})")
    rows = meta.get("rows")
    if digests.dtype != np.uint8 or digests.shape != (rows, DIGEST_BYTES):
        refuse(INDEX_FILE, f"digests of shape {digests.shape} ({digests.dtype}), expected ({rows}, {DIGEST_BYTES}) uint8")
    if checksums.dtype != np.uint8 or checksums.shape != (rows, DIGEST_BYTES):
        refuse(INDEX_FILE, f"checksums of shape {checksums.shape} ({checksums.dtype}), expected ({rows}, "
                           f"{DIGEST_BYTES}) uint8")
    if (offsets.dtype != np.int64 or offsets.shape != (rows + 1,) or offsets[0] != 0
            or np.any(np.diff(offsets) <= 0)):
        refuse(INDEX_FILE, f"offsets are not {rows + 1} increasing positions from 0")
    if states.dtype != np.float32 or states.shape != (int(offsets[-1]), num_states, embed_dim):
        refuse(STATES_FILE, f"shape {states.shape} ({states.dtype}), expected "
                            f"({int(offsets[-1])}, {num_states}, {embed_dim}) float32")
    size = (path / STATES_FILE).stat().st_size
    if size != states.offset + states.nbytes:
        refuse(STATES_FILE, f"{size} bytes, expected {states.offset + states.nbytes}")
    return Entry(path, states, digests, offsets, checksums)


class LayerCache:
    """The layer outputs of one frozen encoder (``sentence_encoder``, fairseq's
    TransformerEncoder) for the rows of the task's data sets (``datasets``: the task's
    ``datasets`` dict, which fairseq fills as it loads splits), stored under ``root``.

    ``lookup(src_tokens)`` returns what the encoder would (final features and inner states,
    T x B x C), or None when a row is not cached (the caller runs the encoder).
    """

    def __init__(self, root, sentence_encoder: torch.nn.Module, datasets: Dict[str, object], padding_idx: int):
        self.root = Path(root)
        self.sentence_encoder = sentence_encoder
        self.datasets = datasets
        self.padding_idx = padding_idx
        self.folder: Optional[Path] = None  # root / fingerprint, once known
        self.fingerprint: Optional[str] = None
        self.entries: List[Entry] = []
        self.index: Dict[bytes, Tuple[int, int, int]] = {}  # digest -> entry, offset, length
        self.scanned: Dict[str, object] = {}  # split -> the dataset object its rows were taken from
        self.missed_batches = 0

    @property
    def num_states(self) -> int:
        return len(self.sentence_encoder.layers) + 1

    @property
    def embed_dim(self) -> int:
        return self.sentence_encoder.embed_tokens.embedding_dim

    def max_positions(self) -> int:
        return self.sentence_encoder.max_positions()

    # ------------------------------------------------------------------ reading

    def open(self) -> None:
        """Fingerprint the encoder (its weights are final by the first forward) and open the
        entries already written for it."""
        check_layer_cache_folder(self.root)
        self.fingerprint = encoder_fingerprint(self.sentence_encoder)
        self.folder = self.root / self.fingerprint[:32]
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:  # e.g. a read-only cache that holds no entry of this encoder
            raise LayerCacheError(f"--layer-cache {self.root}: cannot make {self.folder} ({error.strerror}); "
                                  "expected a folder for the cache or a path where one can be made") from None
        remove_stale(self.folder)  # what killed builders left
        for path in sorted(p for p in self.folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            self.add(open_entry(path, self.fingerprint, self.num_states, self.embed_dim))

    def add(self, entry: Entry) -> None:
        number = len(self.entries)
        self.entries.append(entry)
        starts, lengths = entry.offsets[:-1].tolist(), np.diff(entry.offsets).tolist()
        for digest, start, length in zip(map(bytes, entry.digests), starts, lengths):
            self.index.setdefault(digest, (number, start, length))
        logger.info(f"layer cache: {len(entry.digests)} rows ({entry.states.nbytes / 2**30:.2f} GiB) from {entry.path}")

    def lookup(self, src_tokens: torch.Tensor) -> Optional[Tuple[torch.Tensor, List[torch.Tensor]]]:
        """(final features, inner_states), T x B x C, or None if a row is not in the cache."""
        self.update()
        if self.fingerprint is None:  # no data set loaded (the hub): nothing to look up
            return None
        real = src_tokens.ne(self.padding_idx)
        places = [self.index.get(row_digest(row[mask])) for row, mask in zip(src_tokens.cpu(), real.cpu())]
        if None in places:
            self.missed_batches += 1
            if self.missed_batches == 1:
                logger.info(f"layer cache: a batch holds rows {self.folder} does not have; the encoder "
                            "runs on such batches")
            return None
        gathered = self.gather(places)
        B, T = src_tokens.shape
        dtype = self.sentence_encoder.embed_tokens.weight.dtype
        states = torch.zeros((self.num_states, T, B, self.embed_dim), dtype=dtype, device=src_tokens.device)
        states.permute(2, 1, 0, 3)[real] = gathered.to(src_tokens.device, dtype)  # B x T x (L+1) x C view
        inner_states = list(states.unbind(0))
        layer_norm = getattr(self.sentence_encoder, "layer_norm", None)
        final = inner_states[-1] if layer_norm is None else layer_norm(inner_states[-1])
        return final, inner_states

    def gather(self, places: Sequence[Tuple[int, int, int]]) -> torch.Tensor:
        """The rows' states, one after the other: tokens x (L + 1) x C; one gather per entry
        the rows come from (one for a batch from one split)."""
        lengths = np.array([length for _, _, length in places], dtype=np.int64)
        row_starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        out = np.empty((int(lengths.sum()), self.num_states, self.embed_dim), dtype=np.float32)
        entry_of = np.array([number for number, _, _ in places])
        sources = np.array([start for _, start, _ in places], dtype=np.int64)
        for number in np.unique(entry_of):
            rows = np.flatnonzero(entry_of == number)
            entry = self.entries[number]
            entry.check(sources[rows])
            out[token_positions(row_starts[rows], lengths[rows])] = \
                entry.states[token_positions(sources[rows], lengths[rows])]
        return torch.from_numpy(out)

    # ------------------------------------------------------------------ building

    def update(self) -> None:
        """Cache the rows of every split the task loaded since the last call."""
        new = [(split, dataset) for split, dataset in list(self.datasets.items())
               if self.scanned.get(split) is not dataset]
        if not new:
            return
        if self.fingerprint is None:
            self.open()
        for split, dataset in new:
            self.scanned[split] = dataset
            missing = {}
            for row in dataset_rows(split, dataset, self.padding_idx):
                if len(row) <= self.max_positions():
                    digest = row_digest(row)
                    if digest not in self.index:
                        missing.setdefault(digest, row)
            if missing:
                self.add(self.build(split, missing))

    def build(self, split: str, rows: Dict[bytes, torch.Tensor]) -> Entry:
        """The entry of these rows: built by this process, or by another that held the lock first."""
        name = hashlib.sha256(b"".join(sorted(rows))).hexdigest()[:32]
        path = self.folder / name
        with open(self.folder / f"{name}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not path.exists():
                self.write(path, split, rows)
        return open_entry(path, self.fingerprint, self.num_states, self.embed_dim)

    def write(self, path: Path, split: str, rows: Dict[bytes, torch.Tensor]) -> None:
        digests = sorted(rows, key=lambda digest: len(rows[digest]))  # similar lengths batch together
        lengths = np.array([len(rows[digest]) for digest in digests], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        shape = (int(offsets[-1]), self.num_states, self.embed_dim)
        logger.info(f"layer cache: encoding {len(digests)} rows of {split} ({shape[0]} tokens, "
                    f"{np.prod(shape) * 4 / 2**30:.2f} GiB) into {path}")
        building = temporary_name(path)
        building.mkdir()
        try:
            states = np.lib.format.open_memmap(building / STATES_FILE, mode="w+", dtype=np.float32, shape=shape)
            checksums = np.zeros((len(digests), DIGEST_BYTES), dtype=np.uint8)
            device = self.sentence_encoder.embed_tokens.weight.device
            for batch in length_batches(lengths, BUILD_BATCH_TOKENS):
                tokens = torch.full((len(batch), int(lengths[batch[-1]])), self.padding_idx, dtype=torch.long)
                for i, row in enumerate(batch):
                    tokens[i, :lengths[row]] = rows[digests[row]]
                # not in the caller's autocast (fairseq's --amp): an entry holds the encoder's
                # own-precision states, whatever run builds it and whatever run reads it
                with torch.no_grad(), torch.autocast(device.type, enabled=False):
                    hidden = torch.stack(encode(self.sentence_encoder, tokens.to(device)), dim=2)  # T x B x (L+1) x C
                real = tokens.ne(self.padding_idx).to(device)
                start, end = offsets[batch[0]], offsets[batch[-1] + 1]
                block = hidden.transpose(0, 1)[real].float().cpu().numpy()
                states[start:end] = block
                for row in batch:
                    row_states = block[offsets[row] - start:offsets[row + 1] - start]
                    checksums[row] = np.frombuffer(states_checksum(row_states), dtype=np.uint8)
            states.flush()
            del states
            with open(building / STATES_FILE, "rb+") as f:
                os.fsync(f.fileno())
            with open(building / INDEX_FILE, "wb") as f:
                np.savez(f, digests=np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(-1, DIGEST_BYTES),
                         offsets=offsets, checksums=checksums)
                f.flush()
                os.fsync(f.fileno())
            meta = {"format": FORMAT_VERSION, "fingerprint": self.fingerprint, "states": self.num_states,
                    "embed_dim": self.embed_dim, "rows": len(digests), "tokens": shape[0], "split": split}
            write_atomically(building / META_FILE, json.dumps(meta, indent=1) + "\n")
            os.rename(building, path)
        finally:
            shutil.rmtree(building, ignore_errors=True)


def token_positions(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The positions start .. start + length - 1 of every (start, length), one after the other."""
    ends = np.cumsum(lengths)
    return np.repeat(starts - (ends - lengths), lengths) + np.arange(int(ends[-1]) if len(ends) else 0)


def length_batches(lengths: np.ndarray, max_tokens: int) -> List[List[int]]:
    """Consecutive rows (sorted by length) in batches of at most max_tokens padded tokens."""
    batches, batch = [], []
    for row, length in enumerate(lengths.tolist()):
        if batch and (len(batch) + 1) * length > max_tokens:
            batches.append(batch)
            batch = []
        batch.append(row)
    return batches + [batch] if batch else batches


def dataset_rows(split: str, dataset, padding_idx: int):
    """Every row of `dataset` as training sees it: collated by the dataset's own collater, each
    ``src_tokens`` row without its padding. A dataset without ``net_input.src_tokens`` is skipped."""
    for start in range(0, len(dataset), SCAN_ROWS):
        sample = dataset.collater([dataset[i] for i in range(start, min(start + SCAN_ROWS, len(dataset)))])
        tokens = sample.get("net_input", {}).get("src_tokens") if isinstance(sample, dict) else None
        if tokens is None:
            logger.info(f"layer cache: split {split} has no net_input.src_tokens; not cached")
            return
        for row in tokens:
            yield row[row.ne(padding_idx)]
