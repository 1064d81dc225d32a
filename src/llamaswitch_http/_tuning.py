"""The tuning routes: start a tune, follow it, cancel, resume, save a trial as a preset.

Thin handlers over :meth:`AsyncLlamaSwitch.tune <llamaswitch.AsyncLlamaSwitch.tune>` and
its siblings (docs/tuning.md). ``POST /api/v1/tune`` takes the tune's parts as the
library does: ``model_path``, ``space`` (BenchConfig fields, a list per field to search),
``objective`` (a metric name or an object), ``server`` (the preset's other settings) and
every :class:`~llamaswitch.tuning.TuneOptions` field at the top level; an unknown key is
refused by name (``$.bugdet``), as every bad field is.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from llamaswitch._errors import ConfigValidationError
from llamaswitch._vocabulary import json_schema
from llamaswitch.bench.config import BenchConfig
from llamaswitch.tuning.mapping import TUNABLE_FIELDS
from llamaswitch.tuning.objective import METRICS, Objective
from llamaswitch.tuning.options import TuneOptions
from llamaswitch_http._bodies import Query, read_json
from llamaswitch_http._errors import ok
from llamaswitch_http._state import CORE

__all__ = [
    "tune_cancel",
    "tune_preset",
    "tune_request_schema",
    "tune_resume",
    "tune_space",
    "tune_start",
    "tune_status",
    "tunes_list",
]

_PARTS: Final = ("model_path", "space", "objective", "server")
_MAX_TUNES: Final = 1000
_MAX_TRIAL: Final = 1_000_000


def _reason_of_type(expected: str) -> str:
    return f"invalid value for type, expected {expected}"


async def tune_start(request: web.Request) -> web.Response:
    """``POST /api/v1/tune``: check the request, start the tune; 202 with it (running)."""
    Query(request).check()
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ConfigValidationError([("$", "invalid value for type, expected object")])
    errors: list[tuple[str, str]] = []
    model = body.get("model_path")
    if not isinstance(model, str) or not model:
        errors.append(("$.model_path", "required field missing" if model is None
                       else _reason_of_type("a non-empty str")))  # fmt: skip
    errors.extend((f"$.{name}", _reason_of_type("object or null")) for name in ("space", "server")
                  if body.get(name) is not None and not isinstance(body[name], dict))  # fmt: skip
    objective = body.get("objective")
    if objective is not None and not isinstance(objective, str | dict):
        errors.append(("$.objective", _reason_of_type("str, object or null")))
    if errors:
        raise ConfigValidationError(errors)
    options = {key: value for key, value in body.items() if key not in _PARTS}
    assert isinstance(model, str)  # noqa: S101 - checked above
    tune = await request.app[CORE].tune(
        model, space=body.get("space"), objective=objective, server=body.get("server"), **options
    )
    return ok(tune, "Tune started", status=202)


def _tune_id(query: Query) -> str:
    tune_id = query.text("tune_id", required=True)
    return tune_id or ""


async def tune_status(request: web.Request) -> web.Response:
    """``GET /api/v1/tune/status?tune_id=``: state, progress, trials, best, Pareto front."""
    query = Query(request)
    tune_id = _tune_id(query)
    query.check()
    return ok(await request.app[CORE].tune_status(tune_id), "Tune status retrieved")


async def tune_cancel(request: web.Request) -> web.Response:
    """``POST /api/v1/tune/cancel?tune_id=``: stop a running tune (and its trial's task)."""
    query = Query(request)
    tune_id = _tune_id(query)
    query.check()
    core = request.app[CORE]
    before = await core.tune_status(tune_id)
    tune = await core.cancel_tune(tune_id)
    # It may also have ended by itself between the two calls: the message says what is.
    if before.finished or tune.state != "cancelled":
        return ok(tune, f"Tune already {tune.state}: nothing to cancel")
    return ok(tune, "Tune cancelled")


async def tune_resume(request: web.Request) -> web.Response:
    """``POST /api/v1/tune/resume?tune_id=[&budget=]``: go on with a stopped tune; 202."""
    query = Query(request)
    tune_id = _tune_id(query)
    budget = query.integer("budget", minimum=1, maximum=10_000)
    query.check()
    tune = await request.app[CORE].resume_tune(tune_id, budget=budget)
    return ok(tune, "Tune resumed", status=202)


async def tune_preset(request: web.Request) -> web.Response:
    """``POST /api/v1/tune/preset?tune_id=[&trial=][&preset=]``: write a completed trial
    (default: the best) as a preset now; the gateway serves it at once."""
    query = Query(request)
    tune_id = _tune_id(query)
    trial = query.integer("trial", minimum=0, maximum=_MAX_TRIAL)
    preset = query.text("preset")
    query.check()
    tune = await request.app[CORE].save_tune_preset(tune_id, trial=trial, preset=preset)
    written = tune.preset
    assert written is not None  # noqa: S101 - save_tune_preset raises when it saved none
    if written.error is not None:  # in the file, but the gateway did not take it
        return ok(tune, f"Preset {written.id} written; the gateway did not load it: "
                  f"{written.error}")  # fmt: skip
    return ok(tune, f"Preset {written.id} written")


async def tunes_list(request: web.Request) -> web.Response:
    """``GET /api/v1/tunes[?model=][&limit=]``: tunes, newest first, without their trials."""
    query = Query(request)
    model = query.text("model")
    limit = query.integer("limit", 50, minimum=1, maximum=_MAX_TUNES)
    query.check()
    tunes = await request.app[CORE].list_tunes(model=model, limit=limit or 50)
    return ok(tunes, f"Found {len(tunes)} tunes")


async def tune_space(request: web.Request) -> web.Response:
    """``GET /api/v1/tune/space?model_path=[&n_prompt=]``: the space a tune of the model
    searches by default (batch sizes stop at the objective's ``n_prompt``)."""
    query = Query(request)
    model = query.text("model_path", required=True)
    n_prompt = query.integer("n_prompt", minimum=1, maximum=1_000_000)
    query.check()
    objective = Objective(n_prompt=n_prompt) if n_prompt is not None else None
    space = await request.app[CORE].tune_space(model or "", objective=objective)
    return ok(space, f"{len(space)} fields to tune")


# -- the request's schema (the OpenAPI document and the dashboard's form) -------------------


def tune_request_schema(components: dict[str, Any]) -> dict[str, Any]:
    """The body of ``POST /api/v1/tune``, from the declarations it is checked by."""
    bench = json_schema(BenchConfig)
    components["TuneSpace"] = {
        "type": "object",
        "title": "TuneSpace",
        "description": "BenchConfig fields to tune: a list of values searches the field, one "
        "value fixes it.",
        "properties": {name: bench["properties"][name] for name in TUNABLE_FIELDS},
        "required": [],
        "additionalProperties": False,
    }
    components["TuneObjective"] = json_schema(Objective)
    options = json_schema(TuneOptions)["properties"]
    properties: dict[str, Any] = {
        "model_path": {"type": "string", "minLength": 1, "description": "File name, path "
                       "relative to the models folder, or catalog name."},
        "space": {"anyOf": [{"$ref": "#/components/schemas/TuneSpace"}, {"type": "null"}],
                  "description": "Unset: the space derived from the model and the binaries."},
        "objective": {"anyOf": [{"enum": list(METRICS)},
                                {"$ref": "#/components/schemas/TuneObjective"},
                                {"type": "null"}], "description": "A metric, or an objective."},
        "server": {"anyOf": [{"$ref": "#/components/schemas/ServerConfig"}, {"type": "null"}],
                   "description": "The preset's settings beyond the tuned ones."},
        **options,
    }  # fmt: skip
    return {
        "type": "object",
        "title": "TuneRequest",
        "description": "Start a tune: the model, its space, objective and options.",
        "properties": properties,
        "required": ["model_path"],
        "additionalProperties": False,
    }
