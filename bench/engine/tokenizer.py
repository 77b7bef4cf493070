"""A real byte-level BPE tokenizer, trained with `tokenizers` on text that ships with the OS or Python.

The corpus is read from files every machine running bench has: Debian's common licences where
present, then a fixed list of Python standard-library modules (always present). The corpus names
and their SHA-256 are recorded in the GGUF so a model says what its vocabulary was trained on.
"""

from __future__ import annotations

import hashlib
import sysconfig
from dataclasses import dataclass
from pathlib import Path

# ChatML: llama.cpp's template detector recognises "<|im_start|>" (llm_chat_detect_template),
# and so does every chat client. EOS and the end-of-turn token are the same id.
BOS_TOKEN = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS: tuple[str, ...] = (BOS_TOKEN, IM_START, IM_END)

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_LICENSE_DIR = Path("/usr/share/common-licenses")
# Stable, prose-heavy standard-library modules (docstrings and comments are English text).
_STDLIB_MODULES: tuple[str, ...] = (
    "argparse.py", "textwrap.py", "difflib.py", "pydoc.py", "inspect.py", "typing.py",
    "dataclasses.py", "pathlib.py", "subprocess.py", "tarfile.py", "zipfile/__init__.py",
    "email/message.py", "http/client.py", "json/__init__.py", "unittest/case.py",
    "logging/__init__.py", "collections/__init__.py", "statistics.py", "datetime.py", "this.py",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Corpus:
    """The training text and where it came from."""

    texts: tuple[str, ...]
    sources: tuple[str, ...]

    @property
    def sha256(self) -> str:
        digest = hashlib.sha256()
        for text in self.texts:
            digest.update(text.encode("utf-8", "replace"))
        return digest.hexdigest()


def default_corpus(extra_files: tuple[Path, ...] = ()) -> Corpus:
    """The licences under /usr/share/common-licenses (if any), stdlib sources, and extra_files."""
    paths: list[Path] = []
    if _LICENSE_DIR.is_dir():
        paths.extend(sorted(p for p in _LICENSE_DIR.iterdir() if p.is_file()))
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    paths.extend(stdlib / name for name in _STDLIB_MODULES if (stdlib / name).is_file())
    paths.extend(extra_files)
    texts: list[str] = []
    sources: list[str] = []
    for path in paths:
        try:
            texts.append(path.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            continue  # a licence file that vanished or is unreadable is simply not used
        sources.append(str(path))
    return Corpus(tuple(texts), tuple(sources))


@dataclass(frozen=True, slots=True)
class TrainedVocab:
    """What the GGUF tokenizer keys need: tokens in id order, merges, and the special ids."""

    tokens: tuple[str, ...]  # byte-level strings (GPT-2's byte-to-unicode alphabet)
    merges: tuple[str, ...]  # "a b" pairs, in priority order
    special_ids: dict[str, int]

    def decoded_bytes(self, token_id: int) -> bytes:
        """The raw bytes a (non-special) token stands for."""
        return bytes(_UNICODE_TO_BYTE[ch] for ch in self.tokens[token_id])


def _bytes_to_unicode() -> dict[int, str]:
    # GPT-2's reversible byte → printable-character table, which `tokenizers` ByteLevel also uses.
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return {byte: chr(code) for byte, code in zip(printable, codes, strict=True)}


_BYTE_TO_UNICODE = _bytes_to_unicode()
_UNICODE_TO_BYTE = {ch: byte for byte, ch in _BYTE_TO_UNICODE.items()}


def train_vocab(corpus: Corpus, vocab_size: int) -> TrainedVocab:
    """Train a GPT-2-style byte-level BPE of `vocab_size` tokens (specials included) on the corpus."""
    import json

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    # use_regex=True is GPT-2's split pattern, which llama.cpp applies for tokenizer.ggml.pre "gpt-2".
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus.texts, trainer=trainer)
    model = json.loads(tokenizer.to_str())["model"]
    vocab: dict[str, int] = model["vocab"]
    tokens = [""] * len(vocab)
    for token, token_id in vocab.items():
        tokens[token_id] = token
    merges = tuple(" ".join(m) if isinstance(m, list) else m for m in model["merges"])
    special_ids = {name: vocab[name] for name in SPECIAL_TOKENS}
    return TrainedVocab(tuple(tokens), merges, special_ids)
