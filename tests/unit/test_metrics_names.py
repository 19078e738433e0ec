"""`/metrics` passes the rules of `promtool check metrics` (Prometheus' promlint; promtool is not
on PyPI, so its rules are checked here on the text `libra-serve` renders)."""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

from libra.serving.metrics import ServeMetrics

UNIT_ABBREVIATIONS = {"s", "ms", "us", "ns", "sec", "b", "kb", "mb", "gb", "tb", "pb", "m", "h",
                      "d"}
"""promlint's lintUnitAbbreviations: spell units out."""
NON_BASE_UNITS = {"milliseconds", "microseconds", "nanoseconds", "minutes", "hours", "days",
                  "weeks", "bits", "kilobytes", "megabytes", "gigabytes", "percent",
                  "centimeters", "millimeters", "kilograms", "grams", "cents"}
"""promlint's lintMetricUnits: base units only (seconds, bytes, ratios, dollars)."""
TYPE_WORDS = {"counter", "gauge", "histogram", "summary", "untyped"}


def rendered(metrics: ServeMetrics) -> str:
    metrics.requests.labels("vm", "200").inc()
    metrics.latency.labels("vm").observe(0.01)
    metrics.cost.set_total("vm", 0.5)
    metrics.cost.set_total("serverless", 0.25)
    metrics.set_build_info("m-7")
    return metrics.render().decode()


def problems(text: str) -> list[str]:
    """The promlint findings on `text`, as sentences."""
    found = []
    helps = set(re.findall(r"^# HELP (\S+) ", text, re.M))
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
        words = name.split("_")
        if name not in helps:
            found.append(f"{name}: no help text")
        if kind == "counter" and not name.endswith("_total"):
            found.append(f"{name}: a counter must end in _total")
        if kind != "counter" and name.endswith("_total"):
            found.append(f"{name}: only counters end in _total")
        if kind not in ("histogram", "summary") and name.endswith(("_count", "_sum", "_bucket")):
            found.append(f"{name}: reserved suffix on a {kind}")
        if UNIT_ABBREVIATIONS & set(words):
            found.append(f"{name}: abbreviated unit")
        if NON_BASE_UNITS & set(words):
            found.append(f"{name}: not a base unit")
        if TYPE_WORDS & set(words[1:]):
            found.append(f"{name}: the type in the name")
        if name != name.lower() or ":" in name:
            found.append(f"{name}: not snake_case")
    return found


def test_the_checker_finds_what_promtool_finds() -> None:
    bad = ("# HELP a_cost_usd x\n# TYPE a_cost_usd counter\n"
           "# HELP a_things_total x\n# TYPE a_things_total gauge\n"
           "# HELP a_wait_ms x\n# TYPE a_wait_ms gauge\n"
           "# TYPE a_delay_milliseconds gauge\n")
    assert len(problems(bad)) == 5


def test_every_metric_passes_promlints_rules() -> None:
    assert problems(rendered(ServeMetrics())) == []


def test_the_cost_is_a_counter_that_never_goes_down() -> None:
    metrics = ServeMetrics()
    text = rendered(metrics)
    assert "# TYPE libra_cost_usd_total counter" in text
    metrics.cost.set_total("vm", 0.1)  # a recomputation lower than what was reported
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    values = {s.labels["backend"]: s.value for s in families["libra_cost_usd"].samples}
    assert families["libra_cost_usd"].type == "counter"
    assert values == {"vm": 0.5, "serverless": 0.25}


def test_build_info_is_one_with_the_versions() -> None:
    families = {f.name: f for f in text_string_to_metric_families(rendered(ServeMetrics()))}
    (sample,) = families["libra_build_info"].samples
    assert sample.value == 1.0
    assert sample.labels["model_version"] == "m-7"
    assert re.fullmatch(r"3\.\d+\.\d+", sample.labels["python"])
    assert sample.labels["version"]


def test_the_workers_metrics_pass_too() -> None:
    """The worker's own registry, spot counters included (issue 18)."""
    from handlers.worker_metrics import WorkerMetrics

    worker = WorkerMetrics()
    worker.requests.labels("200", "ok").inc()
    worker.spot_notices.labels("interruption").inc()
    worker.drains.inc()
    assert problems(worker.render().decode()) == []
