"""``ServerConfig.rope_freq_base``: the field added as one declaration, and its test.

Everything about the field derives from its spec: validation (naming the field), the
argv in both flag dialects, the CLI option, the ``extra_args``/``env`` refusal, the JSON
Schema and the docs (``tests/test_reference.py``, ``tests/test_json_schema.py``). The last
test starts real llama-servers of both generations with it.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from llamaswitch._cli import build_parser
from llamaswitch._cli._servers import server_config_from_args
from llamaswitch._errors import ConfigValidationError
from llamaswitch._sync import LlamaSwitch
from llamaswitch._vocabulary import json_schema
from llamaswitch.servers.config import FIELD_FLAGS, ServerConfig, env_problem
from tests.conftest import LlamaBuild
from tests.rest.conftest import make_settings
from tests.test_server_config import DIALECTS, args


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(
    ("value", "passed"),
    [(10000.0, "10000.0"), (500000, "500000"), (0.5, "0.5"), (1e-3, "0.001")],
)
def test_it_is_passed_as_rope_freq_base_in_both_dialects(
    dialect: str, value: float, passed: str
) -> None:
    assert args(ServerConfig(rope_freq_base=value), dialect) == ["--rope-freq-base", passed]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_it_comes_in_declaration_order_before_extra_args(dialect: str) -> None:
    config = ServerConfig(threads=2, rope_freq_base=1e6, extra_args=["--props"])
    assert args(config, dialect) == ["--threads", "2", "--rope-freq-base", "1000000.0", "--props"]


def test_unset_it_passes_nothing() -> None:
    assert ServerConfig().rope_freq_base is None
    for dialect in DIALECTS:
        assert "--rope-freq-base" not in args(ServerConfig(threads=1), dialect)


@pytest.mark.parametrize(
    "value", [0, 0.0, -1, -1e-9, math.nan, math.inf, -math.inf, "10000", True, [10000.0]]
)
def test_a_bad_value_is_refused_naming_the_field(value: object) -> None:
    with pytest.raises(ConfigValidationError) as caught:
        ServerConfig(rope_freq_base=value)  # type: ignore[arg-type]
    assert [path for path, _ in caught.value.errors] == ["rope_freq_base"]
    assert str(caught.value).startswith("rope_freq_base: ")


@pytest.mark.parametrize("value", [0, -5])
def test_zero_and_negative_say_what_is_allowed(value: int) -> None:
    with pytest.raises(ConfigValidationError, match="must be a number greater than 0"):
        ServerConfig(rope_freq_base=value)


def test_a_value_llama_cpp_cannot_read_as_a_float_is_refused_before_acting() -> None:
    with pytest.raises(ConfigValidationError, match="rope_freq_base"):
        ServerConfig(rope_freq_base=1e39)


def test_the_wire_form_refuses_it_with_the_path() -> None:
    with pytest.raises(ConfigValidationError) as caught:
        ServerConfig.from_dict({"rope_freq_base": 0}, path="config")
    assert [path for path, _ in caught.value.errors] == ["config.rope_freq_base"]
    assert ServerConfig.from_dict({"rope_freq_base": 1e6}).to_dict() == {"rope_freq_base": 1e6}


@pytest.mark.parametrize("extra", [["--rope-freq-base", "1e6"], ["--rope-freq-base=1e6"]])
def test_extra_args_may_not_set_it_behind_the_fields_back(extra: list[str]) -> None:
    assert FIELD_FLAGS["--rope-freq-base"] == "rope_freq_base"
    with pytest.raises(ConfigValidationError, match="use the field rope_freq_base"):
        ServerConfig(extra_args=extra)


def test_nor_may_its_environment_twin() -> None:
    reason = env_problem("LLAMA_ARG_ROPE_FREQ_BASE")
    assert reason is not None
    assert "use the field rope_freq_base" in reason


def test_the_schema_says_greater_than_zero_and_at_most_a_float() -> None:
    schema = json_schema(ServerConfig)["properties"]["rope_freq_base"]
    assert schema["anyOf"][0] == {"type": "number", "exclusiveMinimum": 0,
                                  "maximum": 3.4028234663852886e38}  # fmt: skip


@pytest.mark.parametrize(("text", "value"), [("10000", 10000), ("10000.5", 10000.5),
                                             ("1e6", 1e6)])  # fmt: skip
def test_the_cli_option_takes_whole_and_decimal_numbers(text: str, value: float) -> None:
    parsed = build_parser().parse_args(["switch", "tiny.gguf", "--rope-freq-base", text])
    config = server_config_from_args(parsed)
    assert config is not None
    assert config.rope_freq_base == value


def test_the_cli_option_refuses_zero_naming_the_field() -> None:
    parsed = build_parser().parse_args(["start", "tiny.gguf", "--rope-freq-base", "0"])
    with pytest.raises(ConfigValidationError, match=r"^rope_freq_base: "):
        server_config_from_args(parsed)


@pytest.mark.real_binary
def test_a_real_llama_server_starts_with_it(
    llama_build: LlamaBuild, models_dir: Path, tmp_path: Path
) -> None:
    settings = make_settings(llama_build, models_dir, tmp_path / "state")
    with LlamaSwitch(settings) as ls:
        status = ls.switch("tiny.gguf", ServerConfig(rope_freq_base=123456.5, ctx_size=256))
        assert status.state == "ready"
        assert status.config.rope_freq_base == 123456.5
        flag = status.argv.index("--rope-freq-base")
        assert status.argv[flag + 1] == "123456.5"
        if llama_build.generation == "legacy":  # it prints its context parameters
            lines = ls.logs(port=status.port, lines=1000)
            assert any(
                "freq_base" in line and line.rstrip().endswith("= 123456.5") for line in lines
            ), lines
