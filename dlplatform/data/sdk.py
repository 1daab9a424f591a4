"""``p.datasets``: thin handles over the dataset service functions.

```python
ds = p.datasets.create("digits", description="8x8 handwritten digits")
c = ds.push(table_or_dataframe_or_path_or_ray_dataset, message="first batch")
v = ds.get(c.id)              # a pinned version (the read is checked and audited once)
v.to_ray(); v.to_arrow(); v.to_pandas(); v.sample(5); v.describe(); v.split(seed=0)
```
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlplatform.access import Principal
from dlplatform.context import Backend
from dlplatform.data import _read, service
from dlplatform.data._stats import CommitStats
from dlplatform.metadata import Commit, CommitMode, Dataset, DatasetType

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    import ray.data


class VersionHandle:
    """One commit of a dataset, resolved (and its read audited) when the handle was made."""

    def __init__(self, backend: Backend, principal: Principal, commit: Commit) -> None:
        self._backend = backend
        self._principal = principal
        self.commit = commit

    @property
    def id(self) -> str:
        return self.commit.id

    @property
    def ref(self) -> str:
        """``"name@commit"``: what training pins."""
        return f"{self.commit.dataset}@{self.commit.id}"

    @property
    def entity_ref(self) -> str:
        return f"commit:{self.commit.id}"

    @property
    def schema(self) -> pa.Schema:
        return _read.arrow_schema(self.commit)

    def to_ray(self, columns: list[str] | None = None) -> ray.data.Dataset:
        return _read.to_ray(self._backend, self.commit, columns)

    def to_arrow(self, columns: list[str] | None = None) -> pa.Table:
        return _read.to_arrow(self._backend, self.commit, columns)

    def to_pandas(self, columns: list[str] | None = None) -> pd.DataFrame:
        return _read.to_pandas(self._backend, self.commit, columns)

    def sample(self, n: int = 10, *, seed: int = 0) -> pa.Table:
        return service.read_sample(self._backend, self._principal, self.ref, n, seed=seed)

    def describe(self) -> CommitStats:
        return service.describe(self._backend, self._principal, self.ref)

    def split(
        self, seed: int = 0, fractions: Sequence[float] = (0.8, 0.1, 0.1)
    ) -> dict[str, pa.Table]:
        return _read.split(self._backend, self.commit, seed=seed, fractions=fractions)

    def export(self, directory: str | Path) -> list[Path]:
        return service.export(self._backend, self._principal, self.ref, directory)

    def __repr__(self) -> str:
        return f"<Version {self.ref} rows={self.commit.row_count} hash={self.commit.version_hash[:12]}>"


class DatasetHandle:
    """A dataset: push, history, rollback, versions."""

    def __init__(self, backend: Backend, principal: Principal, dataset: Dataset) -> None:
        self._backend = backend
        self._principal = principal
        self.dataset = dataset

    @property
    def name(self) -> str:
        return self.dataset.name

    def refresh(self) -> DatasetHandle:
        self.dataset = service.get_dataset(self._backend, self._principal, self.name)
        return self

    def push(
        self,
        data: Any,
        mode: CommitMode | str = "append",
        message: str = "",
        parent: str | None = None,
        *,
        format: str | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> Commit:
        """Commit a pa.Table, pandas DataFrame, ray Dataset or file path (see ``data.push``)."""
        commit = service.push(
            self._backend,
            self._principal,
            self.name,
            data,
            mode=mode,
            message=message,
            parent=parent,
            format=format,
            progress=progress,
        )
        self.refresh()
        return commit

    def commits(self) -> list[Commit]:
        return service.list_commits(self._backend, self._principal, self.name)

    def rollback(self, commit_id: str, message: str = "") -> Commit:
        commit = service.rollback(
            self._backend, self._principal, self.name, commit_id, message=message
        )
        self.refresh()
        return commit

    def get(self, commit_id: str | None = None) -> VersionHandle:
        """The head (or ``commit_id``) as a readable version."""
        ref = self.name if commit_id is None else f"{self.name}@{commit_id}"
        return VersionHandle(
            self._backend, self._principal, service.resolve(self._backend, self._principal, ref)
        )

    def describe(self, commit_id: str | None = None) -> CommitStats:
        ref = self.name if commit_id is None else f"{self.name}@{commit_id}"
        return service.describe(self._backend, self._principal, ref)

    def delete(self) -> Dataset:
        return service.delete_dataset(self._backend, self._principal, self.name)

    def __repr__(self) -> str:
        return f"<Dataset {self.name} head={self.dataset.head}>"


class DatasetsClient:
    """``p.datasets``."""

    def __init__(self, backend: Backend, principal: Principal) -> None:
        self._backend = backend
        self._principal = principal

    def create(
        self,
        name: str,
        *,
        description: str = "",
        type: DatasetType | str = DatasetType.TABULAR,
        schema: Any = None,
        groups: Sequence[str] = (),
        tags: Sequence[str] = (),
    ) -> DatasetHandle:
        ds = service.create_dataset(
            self._backend,
            self._principal,
            name,
            description=description,
            type=type,
            schema=schema,
            groups=groups,
            tags=tags,
        )
        return DatasetHandle(self._backend, self._principal, ds)

    def get(self, name: str) -> DatasetHandle:
        ds = service.get_dataset(self._backend, self._principal, name)
        return DatasetHandle(self._backend, self._principal, ds)

    def list(self) -> list[Dataset]:
        return service.list_datasets(self._backend, self._principal)

    def resolve(self, ref: str) -> VersionHandle:
        """``"name"`` or ``"name@commit"`` as a readable version."""
        commit = service.resolve(self._backend, self._principal, ref)
        return VersionHandle(self._backend, self._principal, commit)

    def transform(
        self, source: str, fn: Callable[[Any], Any], output: str, **kwargs: Any
    ) -> Commit:
        return service.transform(self._backend, self._principal, source, fn, output, **kwargs)

    def gc(self, *, min_age_s: float = 3600) -> service.DatasetGcReport:
        return service.gc(self._backend, self._principal, min_age_s=min_age_s)
