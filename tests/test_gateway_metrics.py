"""The gateway's metrics label only with what is bounded; the request log keeps it all."""

from __future__ import annotations

from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from llamaswitch._wire import to_wire
from llamaswitch.gateway.requests import RequestLog
from llamaswitch_http._metrics import UNKNOWN_MODEL, Metrics

_UPSTREAM = "/upstream/{model}/{path}"


def _request_samples(metrics: Metrics) -> dict[tuple[str, str, str], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.labels["model"], s.labels["route"], s.labels["status"]): s.value
        for family in text_string_to_metric_families(text)
        if family.name == "llamaswitch_gateway_requests"
        for s in family.samples
        if s.name.endswith("_total")
    }


def test_client_chosen_names_and_paths_add_one_label_set_each() -> None:
    metrics, log = Metrics(), RequestLog()
    for n in range(200):
        # A name no model has: the gateway never resolves it.
        record = log.begin(f"no-such-model-{n}", "/v1/chat/completions",
                           template="/v1/chat/completions")  # fmt: skip
        record.finish(404, error="model_not_found")
        metrics.gateway_request(record)
        # A path a client chose, on a model the gateway found.
        record = log.begin("tiny", f"/upstream/tiny/probe/{n}", template=_UPSTREAM)
        record.resolve("tiny-q8")
        record.finish(200)
        metrics.gateway_request(record)

    assert _request_samples(metrics) == {
        (UNKNOWN_MODEL, "/v1/chat/completions", "404"): 200.0,
        ("tiny-q8", _UPSTREAM, "200"): 200.0,
    }
    # The log, which is bounded by its size, still says what each client sent.
    newest = log.recent(2)
    assert [r.route for r in newest] == ["/upstream/tiny/probe/199", "/v1/chat/completions"]
    assert newest[1].model == "no-such-model-199"


def test_a_record_without_a_template_is_labelled_with_its_route() -> None:
    metrics, log = Metrics(), RequestLog()
    record = log.begin("tiny", "/v1/embeddings")
    record.resolve("tiny-q8")
    record.finish(200)
    metrics.gateway_request(record)
    assert _request_samples(metrics) == {("tiny-q8", "/v1/embeddings", "200"): 1.0}


def test_the_metrics_only_fields_stay_off_the_wire() -> None:
    record = RequestLog().begin("alias", "/v1/anything/here", template="/v1/{tail}")
    record.resolve("tiny-q8")
    wire = to_wire(record)
    assert wire["model"] == "tiny-q8"
    assert wire["route"] == "/v1/anything/here"
    assert not {"template", "resolved", "began"} & set(wire)
