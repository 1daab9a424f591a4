"""Run search in the store: the filter language, final metrics, sort and pages (real DuckDB)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from dlplatform.errors import InvalidInput
from dlplatform.metadata import MetadataStore, Run, RunStatus
from dlplatform.metadata._run_search import compile_search, parse_filter, tokenize
from dlplatform.metadata.records import utcnow

T0 = utcnow()


@pytest.fixture
def st(store: MetadataStore) -> MetadataStore:
    """Six runs: lr 0.001..0.1, val_accuracy rising with i, teams vision/nlp, two statuses."""
    for i in range(6):
        run_id = f"run-{i}"
        store.create_run(Run(
            id=run_id, kind="tracked" if i % 2 else "train", name=f"r{i}", owner="alice" if i < 3
            else "bob", status=RunStatus.SUCCEEDED if i < 4 else RunStatus.FAILED,
            created_at=T0 + timedelta(minutes=i), tags=(f"team={'vision' if i % 2 else 'nlp'}",
            "nightly"), dataset_commit="c-1" if i == 0 else None,
        ))  # fmt: skip
        store.log_params(run_id, {"lr": [0.001, 0.003, 0.01, 0.03, 0.1, 0.3][i], "opt": "adam"})
        # final = the highest step, whatever order the points came in
        store.log_metric_batch([run_id] * 3, ["val_accuracy"] * 3,
                               [0.5 + i / 10, 0.1, 0.2], [2, 0, 1])  # fmt: skip
    return store


def _ids(st: MetadataStore, filter_text: str | None, order: str | None = None) -> list[str]:
    return [r.id for r in st.search_runs(filter_text, order, limit=100)[0]]


def test_filters_on_params_metrics_tags_and_attributes(st: MetadataStore) -> None:
    assert _ids(st, "params.lr < 0.02 and metrics.val_accuracy > 0.55",
                "metrics.val_accuracy DESC") == ["run-2", "run-1"]  # fmt: skip
    assert _ids(st, 'tags.team = "vision"', "created") == ["run-1", "run-3", "run-5"]
    assert _ids(st, 'tags.nightly = ""') == [f"run-{i}" for i in range(5, -1, -1)]
    assert _ids(st, "status = \"failed\" and owner = 'bob'") == ["run-5", "run-4"]
    assert _ids(st, 'kind IN ("train") and params.opt LIKE "ad%"') == ["run-4", "run-2", "run-0"]
    assert _ids(st, 'status NOT IN ("SUCCEEDED")') == ["run-5", "run-4"]
    assert _ids(st, 'name ILIKE "R3"') == ["run-3"]
    later = (T0 + timedelta(minutes=3, seconds=30)).isoformat()
    assert _ids(st, f'created >= "{later}"') == ["run-5", "run-4"]
    assert _ids(st, "metrics.val_accuracy = 0.5") == ["run-0"]  # the final point, not step 0's


def test_dataset_filter_by_name_or_version(st: MetadataStore) -> None:
    from dlplatform.metadata import Commit, CommitMode, Dataset

    st.create_dataset(Dataset(name="digits", created_at=T0, created_by="alice"))
    st.add_commit(Commit(id="c-1", dataset="digits", parent=None, mode=CommitMode.APPEND,
                         author="alice", created_at=T0, row_count=1, size_bytes=1,
                         version_hash="h", arrow_schema=""), expected_head=None)  # fmt: skip
    assert _ids(st, 'dataset = "digits"') == ["run-0"]
    assert _ids(st, 'dataset = "digits@c-1"') == ["run-0"]
    assert _ids(st, 'dataset = "other"') == []


def test_unknown_keys_match_nothing(st: MetadataStore) -> None:
    assert st.search_runs("metrics.nope > 0") == ([], 0)
    assert _ids(st, "params.nope = 1") == []
    # a value is bound, never spliced into the SQL
    assert _ids(st, 'params.opt = "adam\' OR 1=1 --"') == []


def test_sort_and_pages(st: MetadataStore) -> None:
    order = "metrics.val_accuracy DESC"
    page, total = st.search_runs(None, order, limit=2, offset=2)
    assert [r.id for r in page] == ["run-3", "run-2"] and total == 6
    assert st.search_runs(None, order, limit=2, offset=6) == ([], 6)
    assert _ids(st, None, "params.lr")[:2] == ["run-0", "run-1"]
    assert _ids(st, None, "params.lr DESC, name")[:1] == ["run-5"]
    # runs without the sorted metric come last
    st.create_run(Run(id="run-x", owner="alice", created_at=T0))
    assert _ids(st, None, "metrics.val_accuracy DESC")[-1] == "run-x"
    assert _ids(st, None, "metrics.val_accuracy ASC")[-1] == "run-x"
    with pytest.raises(InvalidInput, match="between 1 and 1000"):
        st.search_runs(None, None, limit=0)


def test_final_metric_is_the_highest_step_across_batches(st: MetadataStore) -> None:
    st.log_metric_batch(["run-0"], ["val_accuracy"], [0.99], [1])  # older step: ignored
    assert st.get_final_metrics(["run-0"]) == {"run-0": {"val_accuracy": 0.5}}
    st.log_metric_batch(["run-0"] * 10, ["val_accuracy"] * 10, [0.0] * 9 + [0.7], [2] * 10)
    assert st.get_final_metrics(["run-0"])["run-0"]["val_accuracy"] == 0.7  # same step: last


@pytest.mark.parametrize(
    ("text", "position", "token"),
    [
        ("params.lr << 1", 11, "'<'"),
        ("params.lr <", 11, "end of input"),
        ("foo = 1", 0, "'foo'"),
        ("metrics.x > 'a'", 12, "\"'a'\""),
        ('status = "DONE"', 9, "'\"DONE\"'"),
        ("params.lr < 1 or params.lr > 2", 14, "'or'"),
        ("params.lr < 1 params.x = 2", 14, "'params.x'"),
        ("params.lr = 1 and $", 18, "'$'"),
        ("bogus.lr = 1", 0, "'bogus.lr'"),
        ('created > "yesterday"', 10, "'\"yesterday\"'"),
        ('params.a IN (1, "x")', 16, "'\"x\"'"),
        ('name = "unterminated', 7, "'\"'"),
    ],
)
def test_a_malformed_filter_names_the_token_and_its_position(
    text: str, position: int, token: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_filter(text)
    assert f"at position {position} ({token})" in caught.value.message


def test_a_malformed_sort_names_the_token() -> None:
    with pytest.raises(InvalidInput, match=r"position 21 \('sideways'\)"):
        compile_search(None, "metrics.val_accuracy sideways")
    with pytest.raises(InvalidInput, match="cannot be sorted by a tag"):
        compile_search(None, "tags.team")


def test_keys_and_values_never_reach_the_sql_text() -> None:
    where, params = parse_filter('params.`a b` = "x; DROP TABLE runs" and tags.t = 1')
    assert "DROP" not in where and "a b" not in where and "x;" not in where
    assert params[:2] == ["a b", "x; DROP TABLE runs"] and params[-1] == "1"
    assert [t.kind for t in tokenize("metrics.a>=-1e-3")] == ["field", "op", "number", "end"]
