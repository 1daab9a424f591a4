"""Which calls to the metadata actor may be sent again after it died mid-call (see
``StoreClient``): every read and idempotent write the store has, never a plain append."""

from __future__ import annotations

from dlplatform.metadata.actor import _IDEMPOTENT_WRITES, _READS, retry_safe
from dlplatform.metadata.store import MetadataStore


def test_reads_idempotent_writes_and_keyed_writes_are_retried() -> None:
    for method in ("get_run", "list_runs", "count_runs", "upstream", "user_for_token_hash",
                   "read_snapshot", "update_run", "log_params"):  # fmt: skip
        assert retry_safe(method, {}), method
    assert retry_safe("add_commit", {"idempotency_key": "k-1"})
    assert retry_safe("create_run", {"idempotency_key": "wf:run-1:train:1"})


def test_appends_are_not_retried() -> None:
    for method in ("log_metric_batch", "append_audit", "add_commit", "create_run", "set_alias",
                   "log_prediction_batch", "add_edges", "create_user"):  # fmt: skip
        assert not retry_safe(method, {}), method
    assert not retry_safe("add_commit", {"idempotency_key": None})


def test_every_named_method_exists() -> None:
    """A renamed store method must not leave a stale name here (it would quietly stop being
    retried)."""
    for method in _READS | _IDEMPOTENT_WRITES:
        assert callable(getattr(MetadataStore, method, None)), method
