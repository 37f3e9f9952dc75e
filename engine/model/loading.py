"""Load a causal LM and its tokenizer from a local folder or hub id, safely and (when possible) offline."""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tokstep.engine.defaults import DEFAULT_MODEL
from tokstep.engine.errors import TokstepError
from tokstep.engine.lints.length import set_max_positions
from tokstep.engine.model.models_index import import_models_package
from tokstep.engine.model.results import ModelInfo
from tokstep.engine.model.torch_free import torch_free_import

# torch is imported inside the functions that need it: `tokstep lint` loads only a tokenizer.
DTYPES = {"auto": "auto", "float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


@dataclass(frozen=True)
class ModelSpec:
    """How to load the model (the CLI's --model/--revision/--dtype/--device/... flags)."""

    name_or_path: str = str(DEFAULT_MODEL)
    revision: str | None = None
    dtype: str = "auto"
    device: str = "auto"
    device_map: str | None = None
    trust_remote_code: bool = False

    @property
    def is_default(self) -> bool:
        return self.name_or_path == str(DEFAULT_MODEL)

    @property
    def display_name(self) -> str:
        return "tokstep-mini (bundled)" if self.is_default else self.name_or_path


@dataclass(frozen=True, eq=False)
class LoadedModel:
    model: Any  # a transformers PreTrainedModel in eval mode
    tokenizer: Any  # a transformers tokenizer
    info: ModelInfo
    notes: tuple[str, ...] = ()  # one-line notices about how it was loaded (shown, never errors)


def resolve_device(device: str) -> str:
    """Turn `auto` into the best available device; check an explicit one exists."""
    # lazy: loads torch
    import torch

    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", device):
        raise TokstepError(f"--device {device!r}: expected auto, cpu, cuda, cuda:N (N = 0, 1, ...) or mps")
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TokstepError(f"--device {device}: CUDA is not available on this machine")
        suffix = device.split(":", 1)[1] if ":" in device else "0"
        if not suffix.isdigit():
            raise TokstepError(f"--device {device}: expected cuda or cuda:N with N = 0, 1, ...")
        index = int(suffix)
        if index >= torch.cuda.device_count():
            raise TokstepError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) present")
        return device
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise TokstepError("--device mps: MPS is not available on this machine")
    if device not in ("cpu", "mps"):
        raise TokstepError(f"--device {device}: expected auto, cpu, cuda, cuda:N or mps")
    return device


def _torch_dtype(name: str) -> Any:
    # lazy: loads torch
    import torch

    return "auto" if name == "auto" else getattr(torch, DTYPES[name])


def _first_line(error: BaseException) -> str:
    """One line for a loader's exception; torch's advice to load with weights_only=False never reaches it."""
    text = str(error).strip()
    if "Weights only load failed" in text:
        skip = ("Weights only load failed", "Check the documentation", "Please file an issue")
        reasons = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith(skip)]
        reason = reasons[0] if reasons else "it holds objects other than tensors"
        return (
            f"its PyTorch checkpoint (.bin) holds more than tensors and was refused unread ({reason}); "
            "tokstep never runs a checkpoint's pickled code: re-save it as safetensors from a copy you trust"
        )
    lines = text.splitlines()
    return lines[0] if lines else type(error).__name__


def pickle_only_notice(folder: Path) -> str | None:
    """A local folder whose weights are only pickled PyTorch files: say how they are read (safely)."""
    if any(folder.glob("*.safetensors")):
        return None
    pickled = sorted(p.name for p in folder.glob("pytorch_model*.bin"))
    if not pickled:
        return None
    return (
        f"{folder.name} has only {pickled[0]}{' …' if len(pickled) > 1 else ''} (no safetensors): "
        "read with torch.load(weights_only=True), which loads tensors and runs no code"
    )


def quiet_transformers() -> None:
    """No progress bars or advisory warnings on the terminal: they would tear through the TUI and the report."""
    # lazy: loads transformers
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    import_models_package()  # before any Auto* class: the model files are indexed once, not twice


def max_positions_of(config: Any) -> int | None:
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _offline() -> bool:
    return any(
        os.environ.get(k, "").lower() in ("1", "true", "yes", "on")
        for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _in_hub_cache(repo_id: str) -> bool:
    try:
        # lazy: loads huggingface_hub
        from huggingface_hub import scan_cache_dir

        return any(repo.repo_id == repo_id for repo in scan_cache_dir().repos)
    except Exception:  # noqa: BLE001 - no cache at all
        return False


def _looks_like_path(name: str) -> bool:
    """A name that can only be a folder (`./x`, `/x`, `~/x`, `a/b/c`, `a\\b`, `org/name` when `org` is a local
    folder): it is never sent to the hub, so a typo fails at once instead of after the hub's retries."""
    if name.startswith((".", "/", "~")) or "\\" in name or name.rstrip("/").count("/") > 1:
        return True
    return "/" in name and Path(name.split("/", 1)[0]).expanduser().is_dir()


def _resolve(name_or_path: str, revision: str | None, trust_remote_code: bool) -> tuple[str, dict[str, Any]]:
    """Where to load from, and the from_pretrained flags: a local folder is never looked up online."""
    is_local = Path(name_or_path).expanduser().is_dir()
    if not is_local and _looks_like_path(name_or_path):
        raise TokstepError(f"no such folder: {name_or_path}")
    if not is_local and "/" in name_or_path and _offline() and not _in_hub_cache(name_or_path.rstrip("/")):
        raise TokstepError(
            f"no such folder: {name_or_path} (nor a hub model in the local cache; the hub is off)"
        )
    if is_local and revision is not None:
        raise TokstepError(f"--revision picks a version of a hub model; {name_or_path} is a local folder")
    location = str(Path(name_or_path).expanduser()) if is_local else name_or_path
    common: dict[str, Any] = {"revision": revision, "trust_remote_code": trust_remote_code}
    if is_local:
        common["local_files_only"] = True
    return location, common


def model_fingerprint(name_or_path: str, revision: str | None = None) -> list[list[Any]] | str:
    """What identifies a model's content: [name, bytes, mtime_ns] of every file in its folder (weights, config,
    tokenizer) at its top level, so new weights saved into the same folder make another fingerprint; a hub id cached locally
    is its snapshot's folder, one not cached its name and revision."""
    folder = Path(name_or_path).expanduser()
    if not folder.is_dir():
        try:
            # lazy: loads huggingface_hub
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(name_or_path, revision=revision, local_files_only=True))
        except Exception:  # noqa: BLE001 - not in the cache: the name and revision are all there is
            return f"{name_or_path}@{revision or 'main'}"
    files = []
    for path in sorted(folder.iterdir()):  # from_pretrained reads the top level only (not checkpoint-N/)
        if path.name.startswith(".") or not path.is_file():
            continue
        stat = path.stat()
        files.append([path.name, stat.st_size, stat.st_mtime_ns])
    return files


def _tokenizer_from(location: str, common: dict[str, Any], name_or_path: str) -> Any:
    # lazy: loads transformers
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(location, **common)
    except Exception as error:  # noqa: BLE001 - every loader failure becomes one line
        raise TokstepError(f"cannot load the tokenizer of '{name_or_path}': {_first_line(error)}") from None
    if len(tokenizer) < 2:  # transformers builds an empty tokenizer when the folder has no tokenizer files
        raise TokstepError(f"'{name_or_path}' has no usable tokenizer (no tokenizer files found)")
    return tokenizer


def load_tokenizer(
    name_or_path: str,
    *,
    revision: str | None = None,
    trust_remote_code: bool = False,
    torch_free: bool = False,
) -> Any:
    """Load only the tokenizer (for `tokstep lint`: no weights, no forward pass), with load_model's rules.

    `torch_free`: the caller needs nothing but this tokenizer for the rest of the process, so transformers is
    imported without torch where the process allows it (engine/model/torch_free.py)."""
    with torch_free_import() if torch_free else contextlib.nullcontext():
        quiet_transformers()  # the first import of transformers
    location, common = _resolve(name_or_path, revision, trust_remote_code)
    tokenizer = _tokenizer_from(location, common, name_or_path)
    if Path(location, "config.json").is_file():  # the model's positions, for the `too-long` lint
        try:
            # lazy: loads transformers
            from transformers import AutoConfig

            set_max_positions(tokenizer, max_positions_of(AutoConfig.from_pretrained(location, **common)))
        except Exception:  # noqa: BLE001 - a config we cannot read: the tokenizer's own limit applies
            pass
    return tokenizer


def load_model(
    name_or_path: str,
    *,
    revision: str | None = None,
    dtype: str = "auto",
    device: str = "auto",
    device_map: str | None = None,
    trust_remote_code: bool = False,
) -> LoadedModel:
    """Load model + tokenizer. Local folders never touch the network; hub ids obey HF_HUB_OFFLINE."""
    quiet_transformers()  # the first import of transformers
    # lazy: loads transformers
    from transformers import AutoConfig, AutoModelForCausalLM

    if dtype not in DTYPES:
        raise TokstepError(f"--dtype {dtype}: expected one of auto, bfloat16, float16, float32")
    location, common = _resolve(name_or_path, revision, trust_remote_code)
    try:
        config = AutoConfig.from_pretrained(location, **common)
    except Exception as error:  # noqa: BLE001 - every loader failure becomes one line
        raise TokstepError(f"cannot load model '{name_or_path}': {_first_line(error)}") from None
    target_device = resolve_device(device) if device_map is None else None
    try:
        model = AutoModelForCausalLM.from_pretrained(
            location, config=config, dtype=_torch_dtype(dtype), device_map=device_map, **common
        )
    except ValueError as error:
        if "Unrecognized configuration class" in str(error):
            kind = (config.architectures or [type(config).__name__])[0]
            raise TokstepError(f"'{name_or_path}' is not a causal language model ({kind})") from None
        raise TokstepError(f"cannot load model '{name_or_path}': {_first_line(error)}") from None
    except Exception as error:  # noqa: BLE001
        raise TokstepError(f"cannot load model '{name_or_path}': {_first_line(error)}") from None
    tokenizer = _tokenizer_from(location, common, name_or_path)
    if target_device is not None:
        model.to(target_device)
    loaded = wrap_model(model, tokenizer, name_or_path)
    notice = pickle_only_notice(Path(location)) if common.get("local_files_only") else None
    return replace(loaded, notes=(notice,)) if notice else loaded


def wrap_model(model: Any, tokenizer: Any, name: str = "model") -> LoadedModel:
    """Wrap an already-built model (tests, notebooks) the same way `load_model` does."""
    model.eval()
    head = model.get_output_embeddings()
    vocab_size = head.weight.shape[0] if head is not None else model.config.vocab_size
    param = next(model.parameters())
    info = ModelInfo(
        name=name,
        architecture=type(model).__name__,
        dtype=str(param.dtype).removeprefix("torch."),
        device=str(param.device),
        vocab_size=int(vocab_size),
        tokenizer_size=len(tokenizer),
        max_positions=max_positions_of(model.config),
        num_parameters=sum(p.numel() for p in model.parameters()),
    )

    set_max_positions(tokenizer, info.max_positions)
    return LoadedModel(model=model, tokenizer=tokenizer, info=info)
