"""Serving service functions: deploy, undeploy, list, traffic, predict, feedback, restore.

Every entry point (HTTP route, CLI, SDK) calls these; they authorize and audit. A deployment is
named after its model and recorded in the metadata store (``Deployment``: version, traffic split,
``DeploymentSpec`` as ``config_json``), so ``restore_deployments`` can rebuild every app after a
restart. Dedicated deployments are one Serve app each (``model-<name>`` at ``/models/<name>``);
``shared`` ones live in the multiplexed app ``dlp-shared-models`` at ``/models``.

These functions need a connected Ray cluster with Serve started (``dlp up`` does both).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dlplatform import _ray_internals as ray_internals
from dlplatform import usage
from dlplatform.access import Permission, Principal, audit, authorize
from dlplatform.context import Backend
from dlplatform.errors import (
    BackendUnavailable,
    DLPlatformError,
    IntegrityError,
    InvalidInput,
    NotFound,
    error_for_code,
)
from dlplatform.metadata import Deployment, Feedback, LineageEdge
from dlplatform.metadata.records import check_page, utcnow
from dlplatform.models.registry import resolve_version
from dlplatform.serve.spec import (
    APP_PREFIX,
    QUIET_LOGGING,
    ROUTE_PREFIX,
    SHARED_APP,
    DeploymentInfo,
    DeploymentSpec,
    FeedbackRequest,
    PredictionResult,
    Traffic,
    check_traffic,
    split_model_ref,
)

DEPLOY_TIMEOUT_S = 180.0
"""How long a deploy waits for its replicas to run before it reports failure."""
STATS_TIMEOUT_S = 2.0
MAX_DEPLOYMENTS_PAGE = 100
"""The most deployments one page of ``list_deployments_page`` holds."""


def app_name(deployment: str) -> str:
    return f"{APP_PREFIX}{deployment}"


def _settings_dict(backend: Backend) -> dict[str, Any]:
    return backend.settings.model_dump(mode="json", exclude={"token"})


def _require_serve(backend: Backend) -> Any:
    from ray import serve  # ray: the in-process gateway imports this module without Ray

    backend.require_cluster("serving")
    return serve


def _parse_ref(ref: str) -> tuple[str, str | None]:
    try:
        return split_model_ref(ref)
    except ValueError as exc:
        raise InvalidInput(f"model reference {ref!r}: {exc}") from None


def verify_deployable(backend: Backend, model: str, version: int) -> None:
    """Check the version here, so a bad artifact refuses the deploy with a clear message. This
    runs in the gateway: it never imports the model's ``model_factory`` (user code), which only
    the model's replicas import (``models.verify_version`` checks the path's form alone)."""
    from dlplatform.models.artifact import verify_version  # torch: only a deploy loads it

    try:
        verify_version(backend, model, version)
    except IntegrityError as exc:
        raise IntegrityError(
            f"deploy refused: the artifact of {model}@{version} fails its integrity check "
            f"({exc.message})"
        ) from exc


def traffic_of(record: Deployment) -> Traffic:
    """The versions that take requests and their weights (standbys left out)."""
    return {v: w for v, w in _stored_split(record).items() if w > 0}


def _stored_split(record: Deployment) -> dict[int, int]:
    """The record's split as stored: the versions every replica holds, standbys at weight 0."""
    return {int(v): int(w) for v, w in json.loads(record.traffic_json or "{}").items()}


def _spec_of(record: Deployment) -> DeploymentSpec:
    return DeploymentSpec.model_validate_json(record.config_json or "{}")


def _wait_running(serve: Any, name: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        app = serve.status().applications.get(name)
        status = str(app.status) if app is not None else "NOT_STARTED"
        if app is not None and status.endswith("RUNNING"):
            return
        if app is not None and status.endswith("DEPLOY_FAILED"):
            message = (app.message or "").strip().splitlines()
            raise BackendUnavailable(
                f"Serve application {name} failed to deploy: {message[-1] if message else status}"
            )
        if time.monotonic() > deadline:
            raise BackendUnavailable(
                f"Serve application {name} was not running after {timeout_s:.0f} s ({status}); "
                "the cluster may lack free CPUs for its replicas"
            )
        time.sleep(0.2)


def _run_app(serve: Any, app: Any, name: str, route_prefix: str) -> None:
    from ray.serve.api import RunTarget  # ray: not for the in-process gateway

    serve.run_many(
        [RunTarget(target=app, name=name, route_prefix=route_prefix, logging_config=QUIET_LOGGING)],
        wait_for_applications_running=False,
    )
    _wait_running(serve, name, DEPLOY_TIMEOUT_S)


def _shared_running(serve: Any) -> bool:
    app = serve.status().applications.get(SHARED_APP)
    return app is not None and str(app.status).endswith("RUNNING")


def _ensure_shared_app(backend: Backend, spec: DeploymentSpec) -> None:
    from dlplatform.serve.multiplex import shared_app  # ray: the replica's module imports Ray

    serve = _require_serve(backend)
    if not _shared_running(serve):
        _run_app(serve, shared_app(_settings_dict(backend), spec), SHARED_APP, ROUTE_PREFIX)


def check_replica_fits(num_cpus: float, nodes: list[dict[str, Any]]) -> None:
    """Refuse at once a replica no node of the cluster can ever hold (``nodes`` as
    ``ray.nodes()`` gives them), instead of leaving the deploy to wait for its timeout.

    Raises:
        InvalidInput: ``num_cpus`` is above every alive node's CPU total.
    """
    largest = max((float(n.get("Resources", {}).get("CPU", 0.0)) for n in nodes if n.get("Alive")),
                  default=0.0)  # fmt: skip
    if num_cpus > largest:
        raise InvalidInput(
            f"a replica asks for {num_cpus:g} CPUs but the largest node of this cluster has "
            f"{largest:g}; deploy with num_cpus <= {largest:g}"
        )


def _apply(backend: Backend, record: Deployment) -> None:
    """Make Serve run what ``record`` says (a rolling replace when the app exists)."""
    # ray: the in-process gateway imports this module without Ray
    import ray

    from dlplatform.serve.deployment import model_app

    serve = _require_serve(backend)
    spec = _spec_of(record)
    check_replica_fits(spec.num_cpus, ray.nodes())
    if spec.shared:
        _ensure_shared_app(backend, spec)
        if app_name(record.name) in serve.status().applications:
            serve.delete(app_name(record.name))
        return
    app = model_app(_settings_dict(backend), record.name, record.model, _stored_split(record), spec)
    _run_app(serve, app, app_name(record.name), f"{ROUTE_PREFIX}/{record.name}")


def _save(backend: Backend, record: Deployment, status: str) -> Deployment:
    return backend.store.put_deployment(
        record.model_copy(update={"status": status, "updated_at": utcnow()})
    )


def _deploy_record(
    backend: Backend, principal: Principal, record: Deployment, action: str, detail: str
) -> DeploymentInfo:
    previous: Deployment | None
    try:
        previous = backend.store.get_deployment(record.name)
    except NotFound:
        previous = None
    # the record first: a shared replica finds the model through it, and a restart redeploys it
    saved = _save(backend, record, "DEPLOYING")
    try:
        _apply(backend, saved)
    except DLPlatformError:
        if previous is not None:
            backend.store.put_deployment(previous)
        else:
            backend.store.delete_deployment(record.name)
        raise
    saved = _save(backend, saved, "RUNNING")
    _record_deployed(backend, principal, saved, action, detail)
    return _accounted(backend, saved)


def _record_deployed(
    backend: Backend, principal: Principal, record: Deployment, action: str, detail: str
) -> None:
    """Lineage from each version that takes requests to the deployment, and the audit entry."""
    backend.store.add_edges(
        [
            LineageEdge(
                src=f"model_version:{record.model}@{v}",
                dst=f"deployment:{record.name}",
                relation="deployed",
            )
            for v in traffic_of(record)
        ]
    )
    audit(backend.store, principal, action, f"deployment:{record.name}", detail)


def _accounted(backend: Backend, record: Deployment) -> DeploymentInfo:
    """The deployment as it runs now, its usage interval opened for what it holds: its
    replicas (at least ``min_replicas``) x CPUs per replica; 0 on the shared app."""
    info = _info(backend, record)
    spec = _spec_of(record)
    replicas = 0 if spec.shared else max(info.replicas, spec.min_replicas)
    usage.record_deployment(backend.store, record, replicas * spec.num_cpus)
    return info


def account_replicas(backend: Backend, held: dict[str, tuple[float, int]]) -> int:
    """Follow what each dedicated deployment holds as Serve scales it: a new usage interval
    opens whenever its running replicas x CPUs per replica differ from what ``held`` says (the
    caller's memory per deployment: CPUs last recorded and the peak resident memory of its
    replicas on this node in that interval, updated here), and the interval's peak memory rises
    with what its replicas hold. Returns how many intervals it opened. The rollout driver calls
    it every ``ACCOUNT_S``; Ray's state API not answering only skips the memory."""
    from ray import serve  # ray: the in-process gateway imports this module without Ray

    live = _live(serve)
    names = set()
    opened = 0
    peaks: dict[str, int] = {}
    for record in backend.store.list_deployments():
        spec = _spec_of(record)
        app = live.get(app_name(record.name))
        if spec.shared or app is None or not str(app.status).endswith("RUNNING"):
            continue
        names.add(record.name)
        replicas = _running_replicas(app)
        cpus, peak = held.get(record.name, (-1.0, 0))
        if replicas and cpus != replicas * spec.num_cpus:
            cpus, peak = replicas * spec.num_cpus, 0
            usage.record_deployment(backend.store, record, cpus)
            opened += 1
        rss = _replicas_rss(app_name(record.name))
        if rss is not None and rss > peak:
            peak = peaks[record.name] = rss
        held[record.name] = (cpus, peak)
    if peaks:
        backend.store.record_peak_memory(peaks, kind="deployment")
    for gone in set(held) - names:
        del held[gone]
    return opened


def _replicas_rss(app: str) -> int | None:
    """The resident memory of ``app``'s replicas on this node (None: none could be read)."""
    # ray: the in-process gateway imports this module without Ray
    import ray
    from ray.util.state import list_actors

    url = ray_internals.dashboard_address()
    if not url:
        return None
    try:
        actors = list_actors(
            url, limit=1000, raise_on_missing_output=False,
            filters=[("class_name", "=", f"ServeReplica:{app}:model"), ("state", "=", "ALIVE"),
                     ("node_id", "=", ray.get_runtime_context().get_node_id())],
        )  # fmt: skip
    except Exception:  # accounting never stops the driver
        return None
    return usage.resident_bytes(int(a.pid) for a in actors if a.pid)


def deploy(
    backend: Backend, principal: Principal, ref: str, spec: DeploymentSpec | None = None
) -> DeploymentInfo:
    """Serve ``NAME``, ``NAME@VERSION`` or ``NAME@ALIAS`` (latest version by default) at
    ``POST /models/<NAME>``. Deploying a deployed model rolls the new version out without
    downtime and sends it all traffic.

    Raises:
        PermissionDenied: the caller lacks ``deploy.manage``.
        NotFound: no such model, version or alias.
        IntegrityError: the artifact fails its integrity check (deploy refused).
        BackendUnavailable: Ray/Serve is not running, or the replicas did not start.
    """
    name, selector = _parse_ref(ref)
    authorize(backend.store, principal, Permission.DEPLOY_MANAGE, f"model:{name}")
    version = resolve_version(backend, name, selector)
    verify_deployable(backend, name, version.version)
    spec = spec or DeploymentSpec()
    now = utcnow()
    try:
        created_at = backend.store.get_deployment(name).created_at
    except NotFound:
        created_at = now
    record = Deployment(
        name=name,
        model=name,
        version=version.version,
        config_json=spec.model_dump_json(),
        traffic_json=json.dumps({str(version.version): 100}),
        status="DEPLOYING",
        created_by=principal.name,
        created_at=created_at,
        updated_at=now,
    )
    return _deploy_record(
        backend, principal, record, "deploy", f"version={version.version} shared={spec.shared}"
    )


def set_traffic(
    backend: Backend, principal: Principal, name: str, traffic: dict[Any, Any]
) -> DeploymentInfo:
    """Split requests between versions, e.g. ``{3: 90, 4: 10}`` (percent, summing to 100).

    Raises:
        InvalidInput: bad versions or weights.
        NotFound: no such deployment or version.
    """
    authorize(backend.store, principal, Permission.DEPLOY_MANAGE, f"deployment:{name}")
    try:
        split = check_traffic(traffic)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    record = backend.store.get_deployment(name)
    for v in split:
        backend.store.get_model_version(record.model, v)
        verify_deployable(backend, record.model, v)
    primary = max(split, key=lambda v: (split[v], v))
    held = _stored_split(record)
    in_place = (record.status == "RUNNING" and not _spec_of(record).shared
                and split.keys() <= held.keys())  # fmt: skip
    stored = {**dict.fromkeys(held, 0), **split} if in_place else split
    updated = record.model_copy(
        update={
            "version": primary,
            "traffic_json": json.dumps({str(v): w for v, w in sorted(stored.items())}),
            "updated_at": utcnow(),
        }
    )
    detail = " ".join(f"{v}={w}" for v, w in split.items())
    if not in_place:
        return _deploy_record(backend, principal, updated, "deploy.traffic", detail)
    # every version is loaded already: the replicas follow the record within milliseconds
    saved = backend.store.put_deployment(updated)
    _record_deployed(backend, principal, saved, "deploy.traffic", f"{detail} (in place)")
    return _info(backend, saved)


def undeploy(backend: Backend, principal: Principal, name: str) -> Deployment:
    """Stop serving ``name`` and forget the deployment.

    Raises:
        NotFound: no such deployment.
    """
    authorize(backend.store, principal, Permission.DEPLOY_MANAGE, f"deployment:{name}")
    record = backend.store.get_deployment(name)
    serve = _require_serve(backend)
    backend.store.delete_deployment(name)
    usage.record_undeploy(backend.store, name)
    apps = serve.status().applications
    if app_name(name) in apps:
        serve.delete(app_name(name))
    if SHARED_APP in apps and not any(_spec_of(d).shared for d in backend.store.list_deployments()):
        serve.delete(SHARED_APP)
    audit(backend.store, principal, "undeploy", f"deployment:{name}", f"version={record.version}")
    return record


def call_app(app: str, method: str, *args: Any, timeout_s: float = 60) -> Any:
    """Call ``method`` of a Serve app's ingress replica from sync code and wait for the reply.

    The call runs inside a fresh event loop with a fresh handle: under Serve's throughput mode
    (``SERVE_HEAD_ENV``) a handle's router runs on the caller's loop, and ``.result()`` from a
    thread without a running loop raises.
    """
    from ray import serve  # ray: the in-process gateway imports this module without Ray

    async def call() -> Any:
        handle = serve.get_app_handle(app)
        try:
            return await asyncio.wait_for(getattr(handle, method).remote(*args), timeout_s)
        finally:  # the handle is bound to this loop: close it and drop it from Serve's cache
            with contextlib.suppress(Exception):
                await handle.shutdown_async()
                ray_internals.forget_serve_handle(handle)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(call())
    with ThreadPoolExecutor(1) as pool:  # called from async code: not on its loop
        return pool.submit(asyncio.run, call()).result()


def _live(serve: Any) -> dict[str, Any]:
    try:
        return dict(serve.status().applications)
    except Exception:
        return {}


def _running_replicas(app: Any) -> int:
    """The replicas Serve reports RUNNING across the app's deployments (``serve.status()``)."""
    return sum(int(d.replica_states.get("RUNNING", 0)) for d in app.deployments.values())


def _stats(serve: Any, record: Deployment, shared: bool) -> dict[str, float]:
    try:
        if shared:
            return dict(call_app(SHARED_APP, "stats_for", record.name, timeout_s=STATS_TIMEOUT_S))
        return dict(call_app(app_name(record.name), "stats", timeout_s=STATS_TIMEOUT_S))
    except Exception:
        return {}


def _info(backend: Backend, record: Deployment, *, with_stats: bool = False) -> DeploymentInfo:
    if not backend.on_cluster:
        return DeploymentInfo.of(record, status="NOT_RUNNING")
    from ray import serve  # ray: the in-process gateway imports this module without Ray

    shared = _spec_of(record).shared
    app = _live(serve).get(SHARED_APP if shared else app_name(record.name))
    if app is None:
        return DeploymentInfo.of(record, status="NOT_RUNNING")
    status = str(app.status).rsplit(".", 1)[-1]
    replicas = _running_replicas(app)
    metrics = _stats(serve, record, shared) if with_stats and status == "RUNNING" else {}
    return DeploymentInfo.of(record, status=status, replicas=replicas, metrics=metrics)


def list_deployments(
    backend: Backend, principal: Principal, *, limit: int | None = None, offset: int = 0
) -> list[DeploymentInfo]:
    """Deployments by name with their live status, replicas and request metrics: every one, or
    one page of at most ``limit`` (each costs a call to its replicas for the metrics)."""
    authorize(backend.store, principal, Permission.MODEL_VIEW, "deployments")
    records = backend.store.list_deployments(limit=limit, offset=offset)
    return [_info(backend, r, with_stats=True) for r in records]


def list_deployments_page(
    backend: Backend, principal: Principal, *, limit: int = MAX_DEPLOYMENTS_PAGE, offset: int = 0
) -> tuple[list[DeploymentInfo], int]:
    """One page of ``list_deployments`` and how many deployments there are.

    Raises:
        InvalidInput: ``limit`` outside 1..MAX_DEPLOYMENTS_PAGE or a negative ``offset``.
        PermissionDenied: the caller lacks ``model.view``.
    """
    check_page(limit, offset, MAX_DEPLOYMENTS_PAGE)
    page = list_deployments(backend, principal, limit=limit, offset=offset)
    return page, backend.store.count_deployments()


def get_deployment(backend: Backend, principal: Principal, name: str) -> DeploymentInfo:
    authorize(backend.store, principal, Permission.MODEL_VIEW, f"deployment:{name}")
    return _info(backend, backend.store.get_deployment(name), with_stats=True)


def predict(backend: Backend, principal: Principal, name: str, inputs: Any) -> PredictionResult:
    """Predict through the running deployment (same validation, batching and logging as HTTP).

    Raises:
        NotFound: no such deployment.
        InvalidInput: inputs that do not match the signature.
        TooLarge: more rows than the deployment's limit.
    """
    authorize(backend.store, principal, Permission.PREDICT, f"deployment:{name}")
    record = backend.store.get_deployment(name)
    _require_serve(backend)
    try:
        if _spec_of(record).shared:
            reply = call_app(SHARED_APP, "predict_rows", name, inputs)
        else:
            reply = call_app(app_name(name), "predict_rows", inputs)
    except DLPlatformError:
        raise
    except Exception as exc:
        raise BackendUnavailable(f"deployment {name} did not answer: {exc}") from exc
    if reply[0] != "ok":
        raise error_for_code(reply[1], reply[2])
    return PredictionResult(**reply[1])


def feedback(backend: Backend, principal: Principal, request: FeedbackRequest) -> Feedback:
    """Attach the true label to an earlier prediction (by its ``request_id``).

    Raises:
        NotFound: no logged prediction has that id (logs are flushed about once a second).
    """
    authorize(
        backend.store, principal, Permission.FEEDBACK_WRITE, f"prediction:{request.request_id}"
    )
    try:
        label_json = json.dumps(request.label)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"label is not JSON: {exc}") from None
    try:
        saved = backend.store.add_feedback(
            Feedback(
                request_id=request.request_id, label_json=label_json, by=principal.name, at=utcnow()
            )
        )
    except NotFound:
        raise NotFound(
            f"no logged prediction has request id {request.request_id!r} (predictions are "
            "logged about a second after they are answered)"
        ) from None
    audit(backend.store, principal, "feedback", f"prediction:{request.request_id}")
    return saved


def restore_deployments(backend: Backend) -> list[DeploymentInfo]:
    """Redeploy every recorded deployment (called by the runtime at ``dlp up``).

    A deployment that cannot start is marked ``FAILED`` and the others still start.
    """
    out: list[DeploymentInfo] = []
    for record in backend.store.list_deployments():
        try:
            _apply(backend, record)
            saved = _save(backend, record, "RUNNING")
        except DLPlatformError as exc:
            saved = _save(backend, record, "FAILED")
            usage.record_undeploy(backend.store, record.name)
            backend.store.append_audit(
                "system", "deploy.restore", f"deployment:{record.name}", "error", exc.message[:500]
            )
            out.append(_info(backend, saved))
            continue
        out.append(_accounted(backend, saved))
    return out
