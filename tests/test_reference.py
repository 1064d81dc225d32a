"""The generated reference pages of ``docs/`` say what the code says.

``python -m llamaswitch._reference`` writes them from the field declarations and the
error kinds; these tests fail when a page is stale, and show that a change to a
declaration (or a hand edit of a generated section) would be caught.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

from llamaswitch import _reference
from llamaswitch._errors import ERROR_KINDS
from llamaswitch._vocabulary import SPEC_KEY, specs
from llamaswitch.bench.config import BenchConfig
from llamaswitch.servers.config import ServerConfig

ROOT = Path(__file__).resolve().parent.parent
FIX = "run `python -m llamaswitch._reference` to regenerate"


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A copy of the docs folder, freshly generated, to alter."""
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    _reference.write(tmp_path)
    assert _reference.stale(tmp_path) == []
    return tmp_path


def test_the_generated_docs_are_fresh() -> None:
    assert _reference.stale(ROOT) == [], FIX


def test_the_check_command_agrees() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "llamaswitch._reference", "--check", str(ROOT)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (result.returncode, result.stdout) == (0, ""), FIX


def test_a_hand_edit_of_a_generated_page_shows_as_stale(copy: Path) -> None:
    page = copy / "docs" / "model_params.md"
    page.write_text(page.read_text().replace("CPU threads for generation.", "Threads."))
    assert _reference.stale(copy) == [page]


def test_a_hand_edit_inside_a_marked_section_shows_as_stale(copy: Path) -> None:
    page = copy / "docs" / "cli.md"
    text = page.read_text()
    assert "| 4 |" in text
    page.write_text(text.replace("| 4 |", "| 6 |", 1))
    assert _reference.stale(copy) == [page]


def test_prose_outside_the_markers_is_left_alone(copy: Path) -> None:
    page = copy / "docs" / "cli.md"
    page.write_text(page.read_text().replace("# The command line", "# The CLI", 1))
    assert _reference.stale(copy) == []
    _reference.write(copy)
    assert page.read_text().startswith("# The CLI")


def test_a_changed_field_declaration_shows_as_stale(
    copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ServerConfig.rope_freq_base's doc, as if someone had edited the declaration.
    field = attrs.fields_dict(ServerConfig)["rope_freq_base"]
    changed = attrs.evolve(field.metadata[SPEC_KEY], doc="The RoPE base, changed.")
    real = specs

    def altered(cls: type) -> dict[str, object]:
        found: dict[str, object] = dict(real(cls))
        if cls is ServerConfig:
            found["rope_freq_base"] = changed
        return found

    monkeypatch.setattr(_reference, "specs", altered)
    monkeypatch.setattr("llamaswitch._vocabulary.specs", altered)
    assert set(_reference.stale(copy)) == {copy / "docs" / "model_params.md",
                                          copy / "docs" / "cli.md"}  # fmt: skip
    _reference.write(copy)
    assert "The RoPE base, changed." in (copy / "docs" / "model_params.md").read_text()


def test_a_changed_exit_code_shows_as_stale(copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ERROR_KINDS["task_state"], "cli_exit_code", 1)
    stale = set(_reference.stale(copy))
    assert copy / "docs" / "cli.md" in stale
    assert copy / "docs" / "rest.md" in stale


def test_an_unknown_marker_is_refused_by_name(copy: Path) -> None:
    page = copy / "docs" / "rest.md"
    page.write_text(page.read_text() + "\n<!-- generated: nonsense -->\n<!-- end generated -->\n")
    with pytest.raises(KeyError, match="nonsense"):
        _reference.stale(copy)


def test_every_field_is_in_its_reference_page() -> None:
    for cls, page in ((ServerConfig, "model_params.md"), (BenchConfig, "benchmark_params.md")):
        text = (ROOT / "docs" / page).read_text()
        for name in specs(cls):
            assert f"| `{name}` |" in text, (page, name)


def test_every_exit_code_of_a_kind_has_a_meaning() -> None:
    used = {kind.cli_exit_code for kind in ERROR_KINDS.values()}
    assert used <= set(_reference._EXIT_MEANINGS)


def test_every_error_kind_is_in_the_rest_and_cli_tables() -> None:
    rest = (ROOT / "docs" / "rest.md").read_text()
    cli = (ROOT / "docs" / "cli.md").read_text()
    api = (ROOT / "docs" / "api.md").read_text()
    for code, kind in ERROR_KINDS.items():
        assert re.search(rf"\| {kind.http_status} \| `{code}` \| {kind.cli_exit_code} \|", rest)
        assert f"`{code}` ({kind.http_status})" in cli
        assert f"| `{kind.__name__}` | `{code}` |" in api
