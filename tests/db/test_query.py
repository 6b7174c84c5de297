"""The filter language: parsing, search on both databases, and hostile input."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from db.errors import StoreError
from db.models import Metric, Param, Run
from db.query import FilterError, parse_filter, parse_order_by


def _seed(store):
    rows = [
        ("a", "eamsgd", 10, 0.96, 2, "vision", "shell"),
        ("b", "eamsgd", 4, 0.91, 3, "vision", "ui"),
        ("c", "sync", 1, 0.97, 2, "speech", "cli"),
        ("d", "downpour", 16, 0.42, 4, None, "shell"),
    ]
    for run_id, algo, tau, acc, workers, team, source in rows:
        store.create_run(
            run_id,
            params={"optimizer.algorithm": algo, "optimizer.tau": tau, "model.name": "lenet5"},
            name=f"run {run_id}",
            workers=workers,
            source=source,
            tags={"team": team} if team else {},
        )
        store.log_metrics(
            run_id, [("center_accuracy", 1, 1.0, acc - 0.3), ("center_accuracy", 2, 2.0, acc)]
        )
    store.finish_run("a", "finished")
    store.finish_run("c", "finished")
    store.finish_run("d", "failed", "diverged")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("params.optimizer.algorithm = 'eamsgd'", {"a", "b"}),
        ("params.optimizer.algorithm = 'eamsgd' and metrics.center_accuracy >= 0.95", {"a"}),
        (
            "params.optimizer.algorithm = 'eamsgd' and metrics.center_accuracy >= 0.95 "
            "and status = 'finished'",
            {"a"},
        ),
        ("params.optimizer.tau > 4", {"a", "d"}),
        ("params.optimizer.tau IN (1, 16)", {"c", "d"}),
        ("params.optimizer.algorithm NOT IN ('sync', 'downpour')", {"a", "b"}),
        ("params.optimizer.algorithm LIKE '%sgd%'", {"a", "b"}),
        ("metrics.center_accuracy < 0.5", {"d"}),
        ("min(metrics.center_accuracy) >= 0.6", {"a", "b", "c"}),
        ("max(metrics.center_accuracy) > 0.96", {"c"}),
        ("tags.team = 'vision'", {"a", "b"}),
        ("tags.team != 'vision'", {"c"}),
        ("status IN ('finished', 'failed') and workers >= 3", {"d"}),
        ("source = 'ui'", {"b"}),
        ("(source = 'shell') and (workers = 2)", {"a"}),
        ('params.`optimizer.algorithm` = "sync"', {"c"}),
        ("run_id = 'a'", {"a"}),
        ("start_time > '2000-01-01' and end_time > 0", {"a", "c", "d"}),
        ("duration >= 0", {"a", "b", "c", "d"}),
        ("", {"a", "b", "c", "d"}),
        # MLflow's spellings: quoted keys, entity aliases, attribute aliases, upper-case status
        ('params."optimizer.algorithm" != "sync"', {"a", "b", "d"}),
        ("params.'optimizer.algorithm' = 'sync'", {"c"}),
        ('metrics."center_accuracy" > 0.95', {"a", "c"}),
        ('max(metrics."center_accuracy") > 0.96', {"c"}),
        ('tags."team" = "vision"', {"a", "b"}),
        ("parameters.optimizer.tau > 4 and parameter.optimizer.tau < 16", {"a"}),
        ('attributes.status = "FAILED"', {"d"}),
        ("attribute.run_id IN ('a', 'b') and attr.status != 'finished'", {"b"}),
        ("run.status = 'Finished'", {"a", "c"}),
        ("attributes.run_name = 'run b'", {"b"}),
        ("attributes.`Run name` LIKE 'run %'", {"a", "b", "c", "d"}),
        ("attributes.created > 0 and Created > '2000-01-01'", {"a", "b", "c", "d"}),
    ],
)
def test_search(store, text, expected):
    _seed(store)
    assert {r.id for r in store.search_runs(text)} == expected


def test_order_by_and_limit(store):
    _seed(store)
    ordered = store.search_runs(None, order_by=["metrics.center_accuracy DESC"])
    assert [r.id for r in ordered] == ["c", "a", "b", "d"]
    by_param = store.search_runs(None, order_by="params.optimizer.tau ASC", limit=2)
    assert [r.id for r in by_param] == ["c", "b"]
    found = store.search_runs("metrics.center_accuracy >= 0.9")
    assert found[0].metrics["center_accuracy"].value >= 0.9
    assert found[0].params["model.name"] == "lenet5"


def _counts(store):
    with store.engine.connect() as conn:
        return [
            conn.execute(select(func.count()).select_from(t)).scalar() for t in (Run, Param, Metric)
        ]


@pytest.mark.parametrize(
    "text, phrase",
    [
        ("status = 'finished'; DROP TABLE runs", "unexpected character ';'"),
        ("status = 'finished' -- comment", "unexpected character '-'"),
        ("status = 'x' and DROP TABLE runs", "unknown field 'DROP'"),
        ("name = 'it''s' or 1=1", "'or' is not supported"),
        ("name = 'unterminated", "unterminated string"),
        ("(status = 'finished'", "unbalanced '('"),
        ("status = 'finished')", "unbalanced ')'"),
        ("((status = 'finished')", "unbalanced '('"),
        ("bogus = 1", "unknown field 'bogus'"),
        ("params. = 'x'", "params needs a key"),
        ("metrics.loss >", "expected a value"),
        ("metrics.loss 5", "expected a comparison operator"),
        ("params.a = 'x' and", "expected a field"),
        ("params.a IN ('x'", "expected ',' or ')'"),
        ("min(params.a) > 1", "min() takes a metric"),
        ("metrics.loss LIKE 5", "LIKE needs a quoted pattern"),
        ("`; DROP TABLE runs; -- ` = 1", "expected a field"),
        ("(" * 2000 + "status = 'x'" + ")" * 2000, "nested deeper than 32"),
        ("status = 'x' and " * 1000 + "status = 'x'", "longer than 10000 characters"),
        ("status IN (" + "'x', " * 2000 + "'x')", "longer than 10000 characters"),
        ("params.\"unterminated = 'x'", "unterminated string"),
        ('params."bad key!" = 1', "invalid key 'bad key!'"),
    ],
)
def test_hostile_filters_are_rejected_and_change_nothing(store, text, phrase):
    _seed(store)
    before = _counts(store)
    with pytest.raises(FilterError) as exc:
        store.search_runs(text)
    assert phrase in str(exc.value)
    assert "position" in str(exc.value)
    assert _counts(store) == before
    assert len(store.search_runs(None)) == 4


@pytest.mark.parametrize(
    "text, phrase",
    [
        ("metrics.loss = 'high'", "compares with numbers"),
        ("workers = 'two'", "workers compares with a number"),
        ("status = 3", "status is text"),
        ("start_time > 'yesterday'", "ISO date"),
    ],
)
def test_type_errors_are_explained(store, text, phrase):
    with pytest.raises(StoreError, match=phrase):
        store.search_runs(text)


def test_values_are_bound_never_spliced(store):
    _seed(store)
    evil = "x' OR '1'='1"
    assert store.search_runs(f"name = '{evil.replace(chr(39), chr(39) * 2)}'") == []
    assert len(store.search_runs(None)) == 4


def test_error_points_at_position():
    with pytest.raises(FilterError) as exc:
        parse_filter("metrics.acc >= 0.9 and status == 'x'")
    assert exc.value.position == 31  # the second "=" of "=="
    assert "found '='" in str(exc.value)
    assert "^" in str(exc.value)


def test_comparisons_are_bounded_in_number(store):
    _seed(store)
    many = " and ".join(["workers > 0"] * 600)
    with pytest.raises(FilterError, match="more than 100 comparisons"):
        store.search_runs(many)
    assert len(store.search_runs(" and ".join(["workers > 0"] * 100))) == 4


def test_order_parse():
    (o,) = parse_order_by("max(metrics.center_accuracy) DESC")
    assert o.descending and o.field.aggregate == "max"
    with pytest.raises(FilterError, match="ASC, DESC"):
        parse_order_by("metrics.a sideways")
    (quoted,) = parse_order_by('params."optimizer.tau" desc')
    assert quoted.descending and quoted.field.key == "optimizer.tau"
    with pytest.raises(FilterError, match="at most 10 orderings"):
        parse_order_by(["duration"] * 11)
    assert parse_order_by(["", "  "]) == []
