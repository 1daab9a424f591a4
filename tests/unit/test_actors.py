"""The one boundary to the platform's actors (``dlplatform._actors``) and the metadata store's
interface (``store.STORE_METHODS``), without Ray: the replies an actor gives and the typed errors
they become, the ``StoreClient`` that implements the whole interface, and the typed
``call_async`` of the callers that do not wait (a name the store lacks fails here)."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest

from dlplatform._actors import answer, unwrap
from dlplatform.errors import DLPlatformError, InvalidInput, NotFound
from dlplatform.metadata.actor import StoreClient, _MetadataActor
from dlplatform.metadata.store import STORE_METHODS, MetadataStore

PACKAGE = Path(__file__).resolve().parents[2] / "dlplatform"
CALL_ASYNC = re.compile(r"\.call_async\(\s*([^,)\s]+)")  # a call's first argument
STORE_METHOD = re.compile(r"MetadataStore\.(\w+)")


def _crossed(reply: tuple[object, ...]) -> tuple[object, ...]:
    """A reply as it reaches the caller: through pickle, as Ray carries it."""
    return pickle.loads(pickle.dumps(reply))  # type: ignore[no-any-return]


def test_a_reply_carries_the_value_or_the_typed_error() -> None:
    def missing() -> None:
        raise NotFound("no run r-1")

    def bad() -> None:
        raise ValueError("epochs must be positive")

    def bug() -> None:
        raise KeyError("k")

    assert unwrap(_crossed(answer(lambda: {"a": 1}, what="x"))) == {"a": 1}
    with pytest.raises(NotFound, match="no run r-1"):
        unwrap(_crossed(answer(missing, what="x")))
    with pytest.raises(InvalidInput, match="update_run: epochs must be positive"):
        unwrap(_crossed(answer(bad, what="update_run", bad_input=(ValueError,))))
    with pytest.raises(DLPlatformError, match="the scheduler failed: KeyError") as caught:
        unwrap(_crossed(answer(bug, what="the scheduler")))  # a bug: typed, not "unavailable"
    assert caught.value.code == "internal"


def test_the_store_client_implements_the_store_interface() -> None:
    assert "ping" in STORE_METHODS and "get_run" in STORE_METHODS
    assert "_db" not in STORE_METHODS and "path" not in STORE_METHODS  # private; a property
    for method in STORE_METHODS:
        forward = getattr(StoreClient, method)
        assert forward.__name__ == method
        assert forward is not getattr(MetadataStore, method)  # forwarded, not run here
    assert not any("__getattr__" in vars(cls) for cls in StoreClient.__mro__)
    client = StoreClient(handle=None)
    with pytest.raises(AttributeError):
        client.get_rnu  # type: ignore[attr-defined]  # noqa: B018  (a misspelt method)
    assert pickle.loads(pickle.dumps(client)).what == "the metadata actor"


def test_the_actor_answers_the_interface_only(store: MetadataStore) -> None:
    actor = _MetadataActor.__new__(_MetadataActor)  # its ``call``, without Ray
    actor._store = store
    assert unwrap(actor.call("ping", (), {})) == "ok"
    with pytest.raises(NotFound):
        unwrap(actor.call("get_run", ("r-none",), {}))
    for method in ("_db", "close_all", "__init__"):
        with pytest.raises(InvalidInput, match="has no method"):
            unwrap(actor.call(method, (), {}))
    with pytest.raises(InvalidInput, match="through watch_token_epoch"):
        unwrap(actor.call("wait_token_epoch", (None, 0.0), {}))


def test_every_call_async_names_a_store_method() -> None:
    """``call_async`` takes the store's method itself (``MetadataStore.log_metric_batch``), not
    its name: each call in the package names one that exists."""
    seen = 0
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        for call in CALL_ASYNC.finditer(text):
            where = f"{path.relative_to(PACKAGE)}:{text.count(chr(10), 0, call.start()) + 1}"
            method = STORE_METHOD.fullmatch(call.group(1))
            assert method is not None, f"{where}: {call.group(1)}"
            assert method.group(1) in STORE_METHODS, where
            seen += 1
    assert seen >= 5  # prediction logs, traffic splits, metric batches, startup marks
