"""A tune's preset written into the user's presets file: its own table changes, every other
byte stays (tables, comments, blank lines, key order), and the result is a presets file
the gateway reads."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from llamaswitch._errors import PresetsError
from llamaswitch.gateway.presets import load_presets
from llamaswitch.tuning.preset_file import write_preset

USERS_FILE = """\
# My presets. Keep this comment.
[defaults]
ctx_size = 4096   # enough for chat
ttl_s = 600

# The big one, pinned.
[models.qwen]
file = "Qwen2.5-7B-Instruct-Q4_K_M.gguf"  # the quantized one
aliases = ["gpt-4o-mini"]
pinned = true

[models.other]
file = "other.gguf"
# a trailing note inside [models.other]
"""

TUNED = ["llamaswitch tune t1 (trial 3, 3 runs each): tg128 50.00 ± 1.00 t/s, pp512 900.00 t/s",
         "llamaswitch tune t1: llama-bench b5293 (8733e0c), 2026-12-01, objective tg128",
         ]  # fmt: skip


def write(path: Path, preset: str, settings: dict[str, object], *, owned: set[str] | None = None,
          comment: list[str] | None = None) -> str:  # fmt: skip
    write_preset(path, preset, file="tiny.gguf", settings=settings,
                 owned=owned if owned is not None else set(settings),
                 comment=comment if comment is not None else TUNED)  # fmt: skip
    return path.read_text(encoding="utf-8")


def test_a_new_preset_leaves_every_byte_of_the_file_before_it(tmp_path: Path) -> None:
    path = tmp_path / "llamaswitch.toml"
    path.write_text(USERS_FILE, encoding="utf-8")
    text = write(path, "tiny-tuned", {"threads": 2, "batch_size": 128, "flash_attn": True})
    assert text.startswith(USERS_FILE)
    assert text[len(USERS_FILE):] == (
        "\n[models.tiny-tuned]\n"
        f"# {TUNED[0]}\n# {TUNED[1]}\n"
        'file = "tiny.gguf"\nthreads = 2\nbatch_size = 128\nflash_attn = true\n'
    )  # fmt: skip


def test_the_written_file_is_one_the_gateway_reads_with_defaults_applied(tmp_path: Path) -> None:
    path = tmp_path / "llamaswitch.toml"
    path.write_text(USERS_FILE, encoding="utf-8")
    write(path, "tiny-tuned", {"threads": 2, "batch_size": 128})
    presets = load_presets(path).by_id()
    assert set(presets) == {"qwen", "other", "tiny-tuned"}
    tuned = presets["tiny-tuned"]
    assert (tuned.file, tuned.config.threads, tuned.config.batch_size) == ("tiny.gguf", 2, 128)
    assert tuned.config.ctx_size == 4096  # [defaults] apply to it like any other table
    assert presets["qwen"].aliases == ("gpt-4o-mini",)


def test_a_file_without_a_final_newline_gets_one_before_the_new_table(tmp_path: Path) -> None:
    path = tmp_path / "llamaswitch.toml"
    path.write_text(USERS_FILE.rstrip("\n"), encoding="utf-8")
    text = write(path, "tiny-tuned", {"threads": 2})
    assert text.startswith(USERS_FILE.rstrip("\n") + "\n\n[models.tiny-tuned]\n")
    tomllib.loads(text)


def test_rewriting_a_tuned_table_changes_only_that_table(tmp_path: Path) -> None:
    path = tmp_path / "llamaswitch.toml"
    path.write_text(USERS_FILE, encoding="utf-8")
    first = write(path, "tiny-tuned", {"threads": 2, "batch_size": 128, "flash_attn": True})
    # The user adds a key and a note to the tuned table, and a table after it.
    edited = first.replace(
        "flash_attn = true\n", 'flash_attn = true\naliases = ["fast"]  # mine\n# my note\n'
    )
    edited += '\n[models.after]\nfile = "after.gguf"\n'
    path.write_text(edited, encoding="utf-8")
    again = [
        "llamaswitch tune t2 (trial 1, 6 runs each): tg128 60.00 t/s",
        "llamaswitch tune t2: llama-bench b5293 (8733e0c), 2026-12-02, objective tg128",
    ]
    text = write(path, "tiny-tuned", {"threads": 1, "batch_size": 128},
                 owned={"threads", "batch_size", "flash_attn"}, comment=again)  # fmt: skip
    head, _, rest = text.partition("[models.tiny-tuned]\n")
    table, _, tail = rest.partition("\n[models.after]")
    assert head == USERS_FILE + "\n"  # everything before the table, byte for byte
    assert tail == '\nfile = "after.gguf"\n'  # and after it
    assert table == (
        f"# {again[0]}\n# {again[1]}\n"  # the old tune's lines gave way
        'file = "tiny.gguf"\nthreads = 1\nbatch_size = 128\n'
        'aliases = ["fast"]  # mine\n# my note\n'  # flash_attn: tuned, now llama.cpp's default
    )


def test_an_inline_comment_on_a_tuned_key_stays_when_its_value_changes(tmp_path: Path) -> None:
    path = tmp_path / "llamaswitch.toml"
    path.write_text('[models.qwen]\nfile = "q.gguf"\nthreads = 8   # the box has 8 cores\n')
    text = write(path, "qwen", {"threads": 6}, comment=[])
    assert text == '[models.qwen]\nfile = "tiny.gguf"\nthreads = 6   # the box has 8 cores\n'


def test_a_preset_into_a_missing_file_makes_one(tmp_path: Path) -> None:
    path = tmp_path / "models" / "llamaswitch.toml"
    path.parent.mkdir()
    text = write(path, "tiny-tuned", {"threads": 2})
    assert text.startswith("# Model presets")
    assert load_presets(path).by_id()["tiny-tuned"].config.threads == 2


def test_an_inline_models_table_gets_the_preset_inside_it(tmp_path: Path) -> None:
    path = tmp_path / "llamaswitch.toml"
    path.write_text('models = { chat = { file = "chat.gguf" } }\n')
    write(path, "tiny-tuned", {"threads": 2})
    assert set(load_presets(path).by_id()) == {"chat", "tiny-tuned"}


@pytest.mark.parametrize(
    ("text", "words"),
    [("[models.x\nfile = 1\n", "not valid TOML"),
     ('[models.x]\nfile = "x.gguf"\nthreads = 0\n', "threads")],
    ids=["broken-toml", "bad-table"],
)  # fmt: skip
def test_a_file_that_is_broken_is_refused_and_left_untouched(
    tmp_path: Path, text: str, words: str
) -> None:
    path = tmp_path / "llamaswitch.toml"
    path.write_text(text)
    with pytest.raises(PresetsError, match=words):
        write(path, "tiny-tuned", {"threads": 2})
    assert path.read_text() == text
    assert [p.name for p in tmp_path.iterdir()] == ["llamaswitch.toml"]  # no temporary left


def test_the_files_permissions_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "llamaswitch.toml"
    path.write_text(USERS_FILE)
    path.chmod(0o640)
    write(path, "tiny-tuned", {"threads": 2})
    assert path.stat().st_mode & 0o777 == 0o640
