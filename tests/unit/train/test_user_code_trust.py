"""User code and its powers (issue #18): running your own code is ``code.run``, a non-admin's
runtime_env holds only pip and env_vars, env var values are shown to the owner and admins only,
the gateway never imports a model factory, and a job acts as its owner or not at all (real DuckDB
store, the gateway app in-process; no Ray)."""

from __future__ import annotations

import inspect
import sys
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import torch

from dlplatform import serve, train
from dlplatform.access import SYSTEM, Principal, issue_token
from dlplatform.api.app import API_PREFIX
from dlplatform.config import Settings, load_settings
from dlplatform.context import Backend
from dlplatform.errors import BackendUnavailable, IntegrityError, NotFound, PermissionDenied
from dlplatform.metadata import MetadataStore, Role, Run, RunStatus, User
from dlplatform.metadata.artifacts import ArtifactStore
from dlplatform.metadata.records import utcnow
from dlplatform.models import artifact, builtin
from dlplatform.train import runner, tune, tune_driver
from dlplatform.train.execute import execute_training
from dlplatform.train.scheduler import _Scheduler, job_env
from dlplatform.train.spec import TrainingJobSpec

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

USER_CODE: dict[str, Any] = {"dataset": "digits", "label": "target", "model": "dlp_mod:train_fn"}
SECRET = "s3cret-value-of-alice"


def _user(store: MetadataStore, name: str, role: Role) -> tuple[Principal, dict[str, str]]:
    user = store.create_user(User(name=name, role=role, created_at=utcnow()))
    token, _ = issue_token(store, name)
    return Principal.of(user), {"Authorization": f"Bearer {token}"}


def _submit(client: TestClient, auth: dict[str, str], **fields: Any) -> Any:
    return client.post(f"{API_PREFIX}/training/jobs", json={**USER_CODE, **fields}, headers=auth)


# --- code.run -------------------------------------------------------------------------------


def test_user_code_needs_code_run_and_built_in_models_do_not(
    store: MetadataStore, client: TestClient
) -> None:
    _, researcher = _user(store, "rita", Role.RESEARCHER)  # train.submit, no code.run
    _, scientist = _user(store, "sam", Role.DATA_SCIENTIST)
    denied = _submit(client, researcher)
    assert denied.status_code == 403, denied.text
    assert denied.json()["error"] == "permission_denied"
    assert "lacks permission code.run" in denied.json()["message"]
    factory = _submit(client, researcher, model="dlp_mod:train_fn", model_factory="dlp_mod:build")
    assert factory.status_code == 403
    tuning = client.post(
        f"{API_PREFIX}/tuning/jobs",
        json={"training": USER_CODE, "space": {"lr": "choice(0.1,0.2)"}}, headers=researcher,
    )  # fmt: skip
    assert tuning.status_code == 403 and "code.run" in tuning.json()["message"]
    # past the check: the dataset is looked up next (it does not exist here)
    assert _submit(client, scientist).status_code == 404
    assert _submit(client, researcher, model="mlp").status_code == 404  # built-in: no code.run
    (entry, *_) = store.list_audit(action="code.run", outcome="denied")
    assert entry.actor == "rita" and entry.target == "code:dlp_mod:train_fn"


def test_code_run_roles_are_a_setting(store: MetadataStore, settings: Settings) -> None:
    assert load_settings(home=settings.home).code_run_roles == (Role.ADMIN, Role.DATA_SCIENTIST)
    configured = load_settings(home=settings.home, code_run_roles=["researcher"])
    backend = Backend(
        store=store, artifacts=ArtifactStore.from_settings(configured), settings=configured
    )
    researcher, _ = _user(store, "rita", Role.RESEARCHER)
    scientist, _ = _user(store, "sam", Role.DATA_SCIENTIST)
    spec = TrainingJobSpec(**USER_CODE)
    with pytest.raises(NotFound, match="digits"):  # allowed: on to the dataset
        train.submit(backend, researcher, spec)
    with pytest.raises(NotFound, match="digits"):  # admins always hold code.run
        train.submit(backend, SYSTEM, spec)
    with pytest.raises(PermissionDenied, match=r"lacks permission code\.run"):
        train.submit(backend, scientist, spec)
    # the job's driver checks again with the same roles: they travel in the job's env
    assert job_env(configured)["DLP_CODE_RUN_ROLES"] == '["researcher"]'


# --- runtime_env ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("runtime_env", "message"),
    [
        ({"working_dir": "/home/admin/.dlplatform"}, "working_dir are admin-only"),
        ({"py_modules": ["/srv"], "pip": ["x"]}, "py_modules are admin-only"),
        ({"conda": {"dependencies": ["x"]}}, "conda are admin-only"),
        ({"pip": "/home/admin/requirements.txt"}, "must be a list of requirements"),
        ({"pip": ["-r /home/admin/.dlplatform/admin.token"]}, "not a plain requirement"),
        ({"pip": ["/srv/pkg"]}, "not a plain requirement"),
        ({"pip": ["pkg @ file:///srv/pkg"]}, "not a plain requirement"),
        ({"pip": ["pkg --global-option=x"]}, "not a plain requirement"),
    ],
)
def test_a_non_admins_runtime_env_holds_only_pip_and_env_vars(
    store: MetadataStore, client: TestClient, runtime_env: dict[str, Any], message: str
) -> None:
    _, scientist = _user(store, "sam", Role.DATA_SCIENTIST)
    reply = _submit(client, scientist, runtime_env=runtime_env)
    assert reply.status_code == 403, reply.text
    assert message in reply.json()["message"]
    (entry,) = store.list_audit(action="code.run", outcome="denied")
    assert entry.actor == "sam"


def test_allowed_runtime_envs_pass(
    store: MetadataStore, client: TestClient, admin_token: str
) -> None:
    _, scientist = _user(store, "sam", Role.DATA_SCIENTIST)
    ok = {"pip": ["torch==2.5.1", "pkg[extra]>=1; python_version>'3.9'",
                  "pkg @ https://example.com/pkg.whl", "git+https://example.com/x.git"],
          "env_vars": {"API_KEY": SECRET}}  # fmt: skip
    assert _submit(client, scientist, runtime_env=ok).status_code == 404  # on to the dataset
    admin = {"Authorization": f"Bearer {admin_token}"}
    anything = {"working_dir": "/srv/code", "pip": "/srv/requirements.txt"}
    assert _submit(client, admin, runtime_env=anything).status_code == 404


def test_env_vars_must_be_named_strings(store: MetadataStore, client: TestClient) -> None:
    _, scientist = _user(store, "sam", Role.DATA_SCIENTIST)
    number = _submit(client, scientist, runtime_env={"env_vars": {"N": 1}})
    assert number.status_code == 422 and "env_vars[N] must be a string" in number.text
    name = _submit(client, scientist, runtime_env={"env_vars": {"A=B": "x"}})
    assert name.status_code == 422 and "invalid variable name" in name.text


# --- env var values are masked for other viewers ----------------------------------------------


def test_env_var_values_are_shown_to_the_owner_and_admins_only(
    backend: Backend, store: MetadataStore, client: TestClient, admin_token: str
) -> None:
    alice, alice_auth = _user(store, "alice", Role.DATA_SCIENTIST)
    viewer, viewer_auth = _user(store, "vic", Role.VIEWER)
    _, bob_auth = _user(store, "bob", Role.DATA_SCIENTIST)
    runtime_env = {"pip": ["x"], "env_vars": {"API_KEY": SECRET}}
    training = TrainingJobSpec(**USER_CODE, runtime_env=runtime_env)
    job = store.create_run(Run(id="run-env", owner="alice", status=RunStatus.QUEUED,
                               spec_json=training.model_dump_json(), created_at=utcnow()))  # fmt: skip
    search = tune.TuningJobSpec(training=training, space={"lr": "choice(0.1,0.2)"})
    store.create_run(Run(id="run-tune-env", kind="tune", owner="alice", status=RunStatus.QUEUED,
                         spec_json=search.model_dump_json(), created_at=utcnow()))  # fmt: skip
    admin_auth = {"Authorization": f"Bearer {admin_token}"}
    paths = ["/training/jobs/run-env", "/training/jobs", "/tuning/jobs/run-tune-env",
             "/tuning/jobs"]  # fmt: skip
    for path in paths:
        for auth in (viewer_auth, bob_auth):
            reply = client.get(f"{API_PREFIX}{path}", headers=auth)
            assert reply.status_code == 200, reply.text
            assert SECRET not in reply.text, path  # neither in the spec nor in run.spec_json
            assert '"API_KEY":"***"' in reply.text.replace(" ", "").replace('\\"', '"'), path
        for auth in (alice_auth, admin_auth):
            assert SECRET in client.get(f"{API_PREFIX}{path}", headers=auth).text, path
    got = client.get(f"{API_PREFIX}/training/jobs/run-env", headers=viewer_auth).json()
    assert got["spec"]["runtime_env"] == {"pip": ["x"], "env_vars": {"API_KEY": "***"}}
    # the service functions (the in-process SDK) mask alike, and the stored run keeps the value
    assert train.get_job(backend, viewer, "run-env").spec.runtime_env == got["spec"]["runtime_env"]
    assert train.get_job(backend, alice, "run-env").spec.runtime_env == runtime_env
    assert SECRET in store.get_run(job.id).spec_json


# --- the gateway never imports a model factory --------------------------------------------------


def _probe_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """A user-code model factory whose import leaves a marker file."""
    name = f"dlp_probe_{uuid.uuid4().hex[:8]}"
    marker = tmp_path / f"{name}.imported"
    (tmp_path / f"{name}.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')\n"
        "from dlplatform.models.builtin import build_model as build\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return name, marker


def _register(backend: Backend, tmp_path: Path, name: str, builder: str) -> None:
    table = pa.table({"a": np.arange(10.0), "b": np.arange(10.0), "target": np.arange(10) % 2})
    plan = runner.plan(TrainingJobSpec(dataset="d", label="target"), table.schema,
                       table.column("target"))  # fmt: skip
    weights = tmp_path / f"{name}.pt"
    torch.save(builtin.build_model(plan.model_config).state_dict(), weights)
    run = backend.store.create_run(Run(id=f"run-{name}", owner="system", created_at=utcnow(),
                                       status=RunStatus.RUNNING))  # fmt: skip
    artifact.register_version(
        backend, run=run, model_name=name, state_dict_path=weights,
        model_config=plan.model_config, signature=plan.signature, builder=builder, metrics={},
        params={}, dataset_commit="c-abc", dataset_version_hash=None, code_version="test",
    )  # fmt: skip


def test_the_gateway_never_imports_a_model_factory(
    backend: Backend,
    client: TestClient,
    admin_token: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module, marker = _probe_module(tmp_path, monkeypatch)
    _register(backend, tmp_path, "custom", f"{module}:build")
    auth = {"Authorization": f"Bearer {admin_token}"}
    reply = client.post(f"{API_PREFIX}/deployments", json={"model": "custom@1"}, headers=auth)
    assert reply.status_code == 503, reply.text  # checked, then no cluster here to serve it
    with pytest.raises(BackendUnavailable):
        serve.deploy(backend, SYSTEM, "custom@1")
    assert not marker.exists() and module not in sys.modules
    assert artifact.verify_version(backend, "custom", 1).version == 1
    assert not marker.exists() and module not in sys.modules
    # where the model is built (a replica, a job), the factory is imported: the probe works
    artifact.load_model(backend, "custom", 1)
    assert marker.exists()


def test_the_deploy_check_verifies_without_importing(backend: Backend, tmp_path: Path) -> None:
    _register(backend, tmp_path, "malformed", "os.path; import x:y")
    with pytest.raises(IntegrityError, match="malformed builder"):
        artifact.verify_version(backend, "malformed", 1)
    _register(backend, tmp_path, "builtin", artifact.BUILTIN_BUILDER)
    assert artifact.verify_version(backend, "builtin", None).model == "builtin"


# --- a job acts as its owner or not at all ------------------------------------------------------


def _queued(store: MetadataStore, owner: str, spec: dict[str, Any] | None = None) -> Run:
    spec_json = TrainingJobSpec(**(spec or USER_CODE)).model_dump_json()
    return store.create_run(
        Run(id=f"run-{uuid.uuid4().hex[:8]}", owner=owner, status=RunStatus.QUEUED,
            spec_json=spec_json, created_at=utcnow())
    )  # fmt: skip


@pytest.mark.parametrize("spec", [USER_CODE, {**USER_CODE, "model": "mlp"}])
def test_a_job_whose_owner_is_gone_fails_instead_of_running_as_admin(
    backend: Backend, store: MetadataStore, spec: dict[str, Any]
) -> None:
    run = _queued(store, "ghost", spec)
    ended = execute_training(backend, run.id)
    assert ended.status is RunStatus.FAILED
    assert (
        ended.error
        == "the run's owner 'ghost' no longer exists: the run does not act as anyone else"
    )


def test_a_job_whose_owner_is_disabled_or_lost_code_run_fails(
    backend: Backend, store: MetadataStore
) -> None:
    store.create_user(User(name="dora", role=Role.DATA_SCIENTIST, created_at=utcnow(),
                           disabled=True))  # fmt: skip
    disabled = execute_training(backend, _queued(store, "dora").id)
    assert disabled.status is RunStatus.FAILED
    assert disabled.error == "the run's owner 'dora' is disabled: the run may not act"
    _user(store, "rita", Role.RESEARCHER)  # a data-scientist when she submitted, no longer
    lost = execute_training(backend, _queued(store, "rita").id)
    assert lost.status is RunStatus.FAILED
    assert "role researcher lacks permission code.run" in (lost.error or ""), lost.error


def test_a_tuning_job_whose_owner_is_gone_fails(backend: Backend, store: MetadataStore) -> None:
    search = tune.TuningJobSpec(training=TrainingJobSpec(dataset="digits@c-1", label="target"),
                                space={"lr": "choice(0.1,0.2)"})  # fmt: skip
    run = store.create_run(Run(id="run-tune-ghost", kind="tune", owner="ghost",
                               status=RunStatus.QUEUED, spec_json=search.model_dump_json(),
                               created_at=utcnow()))  # fmt: skip
    ended = tune_driver.execute(backend, run.id)
    assert ended.status is RunStatus.FAILED and "owner 'ghost' no longer exists" in (
        ended.error or ""
    )


class _NoJobs:
    def submit_job(self, **kwargs: Any) -> str:
        raise AssertionError(f"no job may start for a run without its owner: {kwargs}")


def test_the_scheduler_does_not_start_a_run_whose_owner_is_gone(
    store: MetadataStore, settings: Settings
) -> None:
    scheduler: Any = object.__new__(_Scheduler)
    scheduler.__dict__.update(_settings=settings, _store=store, _client=_NoJobs(), _reasons={},
                              _submit_failures={}, errors=[])  # fmt: skip
    run = _queued(store, "ghost")
    scheduler._launch(run, TrainingJobSpec(**USER_CODE), False)
    ended = store.get_run(run.id)
    assert ended.status is RunStatus.FAILED and "owner 'ghost' no longer exists" in (
        ended.error or ""
    )
    assert store.list_tokens() == []  # no token was issued for anyone


def test_a_workflow_steps_run_output_carries_no_env_var_values(store: MetadataStore) -> None:
    """``train_and_deploy``'s training step stores ``masked_run(job.run)`` as its output, which
    every ``workflow.view`` holder reads."""
    training = TrainingJobSpec(**USER_CODE, runtime_env={"env_vars": {"API_KEY": SECRET}})
    run = Run(id="run-wf", owner="alice", status=RunStatus.SUCCEEDED,
              spec_json=training.model_dump_json(), created_at=utcnow())  # fmt: skip
    shown = train.masked_run(run)
    assert SECRET not in shown.model_dump_json() and '"API_KEY":"***"' in shown.spec_json
    assert train.masked_run(run.model_copy(update={"spec_json": TrainingJobSpec(
        **USER_CODE).model_dump_json()})).spec_json == TrainingJobSpec(**USER_CODE).model_dump_json()  # fmt: skip
    from dlplatform.workflows import pipelines

    assert "train.masked_run(job.run)" in inspect.getsource(pipelines.train_model)
