"""Reading a Hugging Face model folder's weights: model.safetensors, a sharded
model.safetensors.index.json, or pytorch_model.bin through the plugin's safe loader. Every
weight's shape is checked before any tensor is read where the format allows it (safetensors'
header)."""
from pathlib import Path
from typing import Callable, Dict

import torch

from .errors import ConversionError
from .source import SourceFolder, WeightShape, listed

SAFETENSORS_FILE = "model.safetensors"

SAFETENSORS_INDEX_FILE = "model.safetensors.index.json"

PYTORCH_BIN_FILE = "pytorch_model.bin"

FLOATING_POINT_DTYPES = {"F16", "BF16", "F32", "F64"}  # safetensors' names


def safetensors_shapes(path: Path, shown_as: Path) -> Dict[str, WeightShape]:
    """name -> (shape, floating point?) from a safetensors file's header: no tensor is read."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as file:
            slices = {name: file.get_slice(name) for name in file.keys()}
            return {name: (tuple(s.get_shape()), s.get_dtype() in FLOATING_POINT_DTYPES) for name, s in slices.items()}
    except (SafetensorError, OSError) as error:
        raise ConversionError(f"{shown_as}: not a readable safetensors file: {error}") from None


def load_safetensors(path: Path, shown_as: Path) -> Dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise ConversionError(f"{shown_as}: not a readable safetensors file: {error}") from None


def load_pytorch_bin(path: Path) -> Dict[str, torch.Tensor]:
    """A pytorch_model.bin, through the plugin's safe loader (weights_only, always): tensors
    and plain containers only."""
    from ..checkpoints.loading import CheckpointError, safe_torch_load

    try:
        weights = safe_torch_load(path)
    except (CheckpointError, OSError) as error:
        raise ConversionError(f"{path}: not loaded: {error}") from None
    if not isinstance(weights, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items()
    ):
        raise ConversionError(f"{path}: expected a state dict (weight name -> tensor)")
    return weights


def load_weights(folder: SourceFolder, check: Callable[[Dict[str, WeightShape], Path], None]):
    """(weights, the file they came from), preferring safetensors. check(shapes, file) sees every
    weight's shape first: a safetensors file's from its header, before any tensor is read."""
    single = folder.path / SAFETENSORS_FILE
    index = folder.path / SAFETENSORS_INDEX_FILE
    pickled = folder.path / PYTORCH_BIN_FILE
    if folder.has(SAFETENSORS_FILE):
        path = folder.file(SAFETENSORS_FILE, "safetensors weights")
        check(safetensors_shapes(path, single), single)
        return load_safetensors(path, single), single
    if folder.has(SAFETENSORS_INDEX_FILE):
        weight_map = folder.json_object(SAFETENSORS_INDEX_FILE, "a safetensors shard index").get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map or not all(isinstance(f, str) for f in weight_map.values()):
            raise ConversionError(f"{index}: expected a 'weight_map' of weight name -> shard file")
        shards = {name: folder.file(name, "a safetensors shard", named_in=index) for name in sorted(set(weight_map.values()))}
        shapes = {}
        for name, path in shards.items():
            for weight, weight_shape in safetensors_shapes(path, folder.path / name).items():
                if weight in shapes:
                    raise ConversionError(f"{index}: {weight} is in more than one shard")
                shapes[weight] = weight_shape
        missing = sorted(set(weight_map) - set(shapes))
        if missing:
            raise ConversionError(f"{index}: the shards lack weights it lists: {listed(missing)}")
        check(shapes, index)
        weights = {}
        for name, path in shards.items():
            weights.update(load_safetensors(path, folder.path / name))
        return weights, index
    if folder.has(PYTORCH_BIN_FILE):
        weights = load_pytorch_bin(folder.file(PYTORCH_BIN_FILE, "pytorch weights"))
        check({name: (tuple(t.shape), t.is_floating_point()) for name, t in weights.items()}, pickled)
        return weights, pickled
    raise ConversionError(
        f"{folder.path}: no weights; expected {SAFETENSORS_FILE}, {SAFETENSORS_INDEX_FILE} or {PYTORCH_BIN_FILE}"
    )
