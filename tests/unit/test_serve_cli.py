"""`libra-serve` as a command: making and hashing keys, and which addresses it will serve open.

Every case here stops before a server starts (a refusal, or the missing model after the checks)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from libra.serving.cli import is_loopback, main
from libra.serving.keys import Keyring, hash_key, parse_keys


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.8.9.10", True), ("localhost", True), ("::1", True),
    ("[::1]", True), ("0.0.0.0", False), ("::", False), ("10.0.0.5", False),
    ("api.example.com", False),
])
def test_only_loopback_addresses_count_as_private(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_keys_new_prints_a_key_and_an_entry_that_accepts_it() -> None:
    result = CliRunner().invoke(main, ["keys", "new", "--name", "ops", "--admin",
                                       "--rate-rps", "2.5", "--burst", "5"])
    assert result.exit_code == 0, result.output
    fields = {line.split(":", 1)[0]: line.split(":", 1)[1].strip()
              for line in result.output.splitlines() if line[:1].isalpha()}
    key, entry = fields["key"], fields["entry"]
    ring = Keyring(parse_keys(entry, "output"))
    found = ring.lookup(key)
    assert found is not None
    assert (found.name, found.admin, found.rate_rps, found.burst) == ("ops", True, 2.5, 5)


def test_keys_hash_reads_keys_from_stdin() -> None:
    keys = ["libra_" + "a" * 40, "libra_" + "b" * 40]
    result = CliRunner().invoke(main, ["keys", "hash"], input="\n".join(keys) + "\n")
    assert result.exit_code == 0, result.output
    assert result.output.split() == [hash_key(k) for k in keys]


def test_keys_hash_refuses_a_password() -> None:
    result = CliRunner().invoke(main, ["keys", "hash"], input="hunter2\n")
    assert result.exit_code == 2
    assert "at least 32" in result.output


def serve(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--model-dir", "/nonexistent/model", *args],
                                env={"LIBRA_API_KEYS": None, "LIBRA_API_KEYS_FILE": None,
                                     **(env or {})})
    return result.exit_code, result.output


def test_a_public_address_without_keys_is_refused_with_the_way_out() -> None:
    code, out = serve("--host", "0.0.0.0")
    assert code == 2
    assert "refusing to serve 0.0.0.0 without API keys" in out
    assert "--allow-unauthenticated" in out


@pytest.mark.parametrize("args", [["--host", "0.0.0.0", "--allow-unauthenticated"],
                                  ["--host", "127.0.0.1"]])
def test_loopback_or_an_explicit_flag_passes_the_check(args: list[str]) -> None:
    code, out = serve(*args)
    assert code == 1  # got as far as looking for the model
    assert "no model in /nonexistent/model" in out


def test_a_public_address_with_keys_passes_the_check() -> None:
    code, out = serve("--host", "0.0.0.0",
                      env={"LIBRA_API_KEYS": f"a {hash_key('libra_' + 'c' * 40)}"})
    assert "no model in" in out
    assert code == 1


def test_a_bad_keys_file_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("# keys\nalice not-a-hash\n")
    code, out = serve("--api-keys-file", str(path))
    assert code == 2
    assert f"{path}:2: key 'alice'" in out
