"""The web UI in a real browser: headless Chromium against a live gateway over real data.

The gateway is the real app (``create_app``) over a real DuckDB store and a local artifact store,
served by uvicorn on a loopback port; data is seeded through the service functions. Screenshots of
every page land in ``fixtures_browser.SCREENSHOT_DIR`` (``/tmp/dlplatform-ui-screenshots``).
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pyarrow as pa
import pytest
from fixtures_browser import live_gateway, screenshot
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from dlplatform import data, models, usage
from dlplatform.access import Principal, bootstrap_admin, issue_token
from dlplatform.api.app import create_app
from dlplatform.config import load_settings
from dlplatform.context import Backend
from dlplatform.metadata import (
    Deployment,
    LineageEdge,
    MetadataStore,
    ModelVersion,
    Role,
    Run,
    RunStatus,
    User,
    WorkflowRun,
    WorkflowStep,
)
from dlplatform.metadata.artifacts import ArtifactStore
from dlplatform.metadata.records import UsageInterval, utcnow
from dlplatform.train import TrainingJobSpec, _startup, tracking
from dlplatform.train.tune import TuningJobSpec

pytestmark = pytest.mark.integration

WAIT_S = 20
ADMIN = Principal(name="admin", role=Role.ADMIN)


@dataclass
class Seeded:
    url: str
    backend: Backend
    admin: str
    viewer: str
    viewer_token_id: str
    commits: list[str]  # oldest first
    runs: list[str]
    tracked: list[str]  # exp-a, exp-b: tracked runs with params, tags, curves, artifacts
    tune: str  # a tuning run with five trials
    workflow_run: str
    routes: set[tuple[str, str]]


def _backend(home: Path) -> Backend:
    settings = load_settings(home=home)
    store = MetadataStore(settings.metadata_path)
    return Backend(store=store, artifacts=ArtifactStore.from_settings(settings), settings=settings)


def _routes(app: Any) -> set[tuple[str, str]]:
    """(METHOD, path) of every API route, from the OpenAPI document (what the UI reads too)."""
    return {(m.upper(), path) for path, ops in app.openapi()["paths"].items() for m in ops}


def _seed(backend: Backend) -> dict[str, Any]:
    store = backend.store
    admin_token = bootstrap_admin(store)
    assert admin_token is not None
    store.create_user(User(name="vic", role=Role.VIEWER, created_at=utcnow()))
    viewer_token, viewer_info = issue_token(store, "vic")

    data.create_dataset(backend, ADMIN, "digits", description="8x8 handwritten digits")
    first = data.push(
        backend, ADMIN, "digits",
        pa.table({"pixel": [0, 3, 9, 12], "label": ["zero", "one", "<b>two</b>", "one"]}),
        message="first batch",
    )  # fmt: skip
    second = data.push(
        backend, ADMIN, "digits", pa.table({"pixel": [7, 8], "label": ["two", "zero"]}),
        message="second batch",
    )  # fmt: skip

    now = utcnow()
    runs = []
    for i, status in enumerate([RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.RUNNING]):
        spec = TrainingJobSpec(
            dataset=f"digits@{second.id}", label="label", params={"hidden": 32 * (i + 1)},
            lr=0.01 * (i + 1), epochs=5,
        )  # fmt: skip
        run = Run(
            id=f"run-ui-{i}", name=f"mlp-{i}", owner="admin", status=status,
            spec_json=spec.model_dump_json(), dataset_commit=second.id,
            created_at=now - timedelta(minutes=30 - i), started_at=now - timedelta(minutes=29 - i),
            ended_at=None if status is RunStatus.RUNNING else now - timedelta(minutes=20 - i),
            error="RuntimeError: worker 1 lost" if status is RunStatus.FAILED else None,
        )  # fmt: skip
        store.create_run(run)
        epochs = list(range(5))
        store.log_metric_batch(
            [run.id] * 10,
            ["loss"] * 5 + ["accuracy"] * 5,
            [1.0 / (e + 1 + i) for e in epochs] + [0.5 + 0.1 * e - 0.02 * i for e in epochs],
            epochs * 2,
        )
        store.add_edges(
            [LineageEdge(src=f"commit:{second.id}", dst=f"run:{run.id}", relation="trained_on")]
        )
        runs.append(run.id)

    store.add_model_version(
        ModelVersion(
            model="digits-mlp", version=0, run_id=runs[0], artifact_sha256="0" * 64,
            signature_json="{}", metrics_json=json.dumps({"accuracy": 0.93}),
            dataset_commit=second.id, created_at=now,
        ),
        edges_to=[(f"run:{runs[0]}", "produced")],
    )  # fmt: skip
    models.promote(backend, ADMIN, "digits-mlp", 1, "production")
    store.put_deployment(
        Deployment(
            name="digits", model="digits-mlp", version=1, traffic_json='{"1": 100}',
            status="RUNNING", created_by="admin", created_at=now, updated_at=now,
        )
    )  # fmt: skip
    store.add_edges(
        [LineageEdge(src="model_version:digits-mlp@1", dst="deployment:digits", relation="serves")]
    )
    store.create_alert("drift", "deployment:digits", "input drift on pixel", "critical")

    wf = WorkflowRun(
        id="wf-ui-1", workflow="tests.pipelines:retrain", owner="admin", status=RunStatus.FAILED,
        created_at=now - timedelta(minutes=2), started_at=now - timedelta(minutes=2),
        ended_at=now - timedelta(minutes=1), error="step evaluate failed: ValueError: accuracy 0.4 < 0.9",
    )  # fmt: skip
    store.create_workflow_run(wf)
    for j, (name, status) in enumerate(
        [
            ("load", "SUCCEEDED"),
            ("train", "SUCCEEDED"),
            ("evaluate", "FAILED"),
            ("deploy", "QUEUED"),
        ]
    ):
        started = None if status == "QUEUED" else now - timedelta(seconds=110 - 20 * j)
        store.put_workflow_step(
            WorkflowStep(
                run_id=wf.id, step_id=f"s{j}", name=name, status=RunStatus(status), attempts=1,
                started_at=started,
                ended_at=None if started is None else started + timedelta(seconds=15),
                error="ValueError: accuracy 0.4 < 0.9" if status == "FAILED" else None,
            )
        )  # fmt: skip
    return {
        "admin": admin_token, "viewer": viewer_token, "viewer_token_id": viewer_info.id,
        "commits": [first.id, second.id], "runs": runs, "workflow_run": wf.id,
        "tracked": _seed_tracked(backend, second.id), "tune": _seed_tuning(backend, second.id),
    }  # fmt: skip


def _add_model_version(backend: Backend, model: str, run_id: str) -> int:
    """A version whose artifact is a real weights-only directory (its bytes are not a usable
    state dict: only listed and previewed here)."""
    folder = backend.settings.home / f"ui-model-{time.monotonic_ns()}"
    folder.mkdir(parents=True)
    (folder / "model.json").write_text(json.dumps({"format": "dlplatform.model/1"}, indent=1))
    (folder / "weights.pt").write_bytes(bytes(range(256)) * 8)
    ref = backend.artifacts.put_dir(folder)
    version = backend.store.add_model_version(
        ModelVersion(model=model, version=0, run_id=run_id, artifact_sha256=ref.sha256,
                     signature_json="{}", created_at=utcnow()),
    )  # fmt: skip
    return version.version


def _png(width: int, height: int) -> bytes:
    """A small RGB PNG (orange), made by hand."""

    def chunk(tag: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(tag + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", crc)

    rows = b"".join(b"\x00" + b"\xc2\x41\x0c" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _seed_tracked(backend: Backend, commit: str) -> list[str]:
    """Two runs tracked from "a notebook" through the service the gateway calls: params, tags,
    six epochs of loss/accuracy (train and val), bookkeeping keys, a NaN; files on the first."""
    ids = []
    t0 = time.time() - 3600
    for name, lr, hidden, slope in [("exp-a", 0.01, 32, 1.0), ("exp-b", 0.05, 64, 0.7)]:
        view = tracking.start_run(
            backend, ADMIN, tracking.TrackedRunSpec(
                name=name, params={"lr": lr, "hidden": hidden}, tags={"team": "vision"},
                dataset=f"digits@{commit}",
            ),
        )  # fmt: skip
        run_id = view.run.id
        keys, values, steps, stamps = [], [], [], []
        for e in range(6):
            point = {
                "loss": slope / (e + 1), "val_loss": slope * 1.2 / (e + 1) + 0.05,
                "accuracy": 0.5 + 0.08 * e * slope, "val_accuracy": 0.45 + 0.07 * e * slope,
                "epoch": float(e), "samples": 1000.0, "restarts": 0.0,
                "grad_norm": float("nan") if e == 2 else 2.0 - 0.2 * e,
            }  # fmt: skip
            for key, value in point.items():
                keys.append(key)
                values.append(value)
                steps.append(e)
                stamps.append(t0 + 30 * e)
        backend.store.log_metric_batch([run_id] * len(keys), keys, values, steps, stamps)
        ids.append(run_id)
    files = {
        "notes.txt": "".join(f"line {i:03d}: the quick brown fox\n" for i in range(80)).encode(),
        "plots/curve.png": _png(16, 8),
        "tables/sample.csv": ("epoch,loss,note\n" + "".join(
            f'{i},{1 / (i + 1):.4f},"row {i}, quoted"\n' for i in range(30))).encode(),
    }  # fmt: skip
    staging = backend.settings.home / "ui-staging"
    staging.mkdir(parents=True, exist_ok=True)
    for path, body in files.items():
        staged = staging / path.replace("/", "_")
        staged.write_bytes(body)
        tracking.log_artifact(backend, ADMIN, ids[0], path, staged)
    for run_id in ids:
        tracking.end_run(backend, ADMIN, run_id, tracking.RunEnd(status="SUCCEEDED"))
    return ids


def _seed_tuning(backend: Backend, commit: str) -> str:
    """A finished ASHA search over lr (log), hidden (choice) and optimizer (a category) with
    five trials, two of them stopped early; its records as ``tune_driver.execute`` leaves them."""
    store, now = backend.store, utcnow()
    spec = TuningJobSpec(
        training=TrainingJobSpec(dataset=f"digits@{commit}", label="label", epochs=4),
        space={"lr": "loguniform(1e-4,1e-1)", "hidden": "choice(16,32,64)",
               "optimizer": "choice('adam','sgd')"},
        samples=5, metric="val_loss", mode="min",
    )  # fmt: skip
    tune_id = "run-ui-tune"
    trials = [  # (val_loss at the last epoch, epochs, stopped early, lr, hidden, optimizer)
        (0.40, 4, False, 0.003, 32, "adam"), (0.25, 4, False, 0.01, 64, "adam"),
        (0.60, 1, True, 0.0002, 16, "sgd"), (0.31, 4, False, 0.02, 32, "sgd"),
        (0.90, 1, True, 0.08, 16, "sgd"),
    ]  # fmt: skip
    store.create_run(Run(
        id=tune_id, kind="tune", name="search-1", owner="admin", status=RunStatus.SUCCEEDED,
        spec_json=spec.model_dump_json(), dataset_commit=commit, created_at=now,
        started_at=now, ended_at=now,
        result_json=json.dumps({"best_trial": f"{tune_id}.t1", "best_metric": 0.25}),
    ))  # fmt: skip
    for i, (final, epochs, stopped, lr, hidden, optimizer) in enumerate(trials):
        trial = f"{tune_id}.t{i}"
        store.create_run(Run(
            id=trial, kind="trial", parent_id=tune_id, name=trial, owner="admin",
            status=RunStatus.STOPPED if stopped else RunStatus.SUCCEEDED,
            spec_json=spec.training.model_dump_json(), dataset_commit=commit, created_at=now,
            error=f"stopped early by ASHA after {epochs} epoch(s)" if stopped else None,
        ))  # fmt: skip
        store.log_params(trial, {"space.lr": str(lr), "space.hidden": str(hidden),
                                 "space.optimizer": optimizer})  # fmt: skip
        losses = [final + 0.1 * (epochs - 1 - e) for e in range(epochs)]
        store.log_metric_batch([trial] * 2 * epochs, ["loss"] * epochs + ["val_loss"] * epochs,
                               [v - 0.05 for v in losses] + losses, [*range(epochs)] * 2)  # fmt: skip
    return tune_id


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    backend = _backend(tmp_path_factory.mktemp("ui") / "home")
    ids = _seed(backend)
    app = create_app(backend)
    with live_gateway(app) as url:
        yield Seeded(url=url, backend=backend, routes=_routes(app), **ids)
    backend.store.close()


# --- helpers ---------------------------------------------------------------------------------


def _ready(driver: Any, route: str, timeout: float = WAIT_S) -> None:
    """Wait until the page for ``route`` (the hash without '#/') has rendered."""
    css = f'main[aria-busy="false"][data-route="{route}"]'
    try:
        WebDriverWait(driver, timeout).until(ec.presence_of_element_located((By.CSS_SELECTOR, css)))
    except TimeoutException:
        main = driver.find_element(By.ID, "main")
        raise AssertionError(
            f"page {route!r} did not render; main is {main.get_attribute('data-route')!r}: "
            f"{main.text[:500]!r}; console: {driver.get_log('browser')[-5:]}"
        ) from None


def _go(driver: Any, route: str) -> None:
    """Navigate inside the single-page app (no reload) and wait for the page."""
    driver.execute_script("window.location.hash = arguments[0]", f"#/{route}")
    _ready(driver, route)


def _sign_in(driver: Any, url: str, token: str) -> None:
    # full page loads (a new query string each time), so no earlier page's work can interfere
    driver.get(f"{url}/ui/?load={time.monotonic_ns()}")
    driver.execute_script("sessionStorage.clear()")
    driver.get(f"{url}/ui/?load={time.monotonic_ns()}")
    _ready(driver, "signin")
    field = driver.find_element(By.ID, "token")
    field.send_keys(token)
    field.send_keys(Keys.ENTER)
    _ready(driver, "datasets")


def _text(driver: Any) -> str:
    return driver.find_element(By.ID, "main").text


def _no_overflow(driver: Any) -> None:
    widths = driver.execute_script(
        "const m = document.getElementById('main');"
        "return [document.documentElement.scrollWidth, window.innerWidth, m.scrollWidth, m.clientWidth]"
    )
    doc_w, win_w, main_w, main_client = widths
    assert doc_w <= win_w, f"page overflows horizontally: {widths}"
    assert main_w <= main_client, f"main content overflows horizontally: {widths}"


def _shot(driver: Any, name: str) -> Path:
    """A full-page screenshot (window grown to the page height, then restored)."""
    width, height = driver.get_window_size().values()
    driver.execute_script("window.scrollTo(0, 0)")
    full = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(max(full + 120, height), 4000))
    path = screenshot(driver, name)
    driver.set_window_size(width, height)
    assert path.stat().st_size > 1000
    return path


def _has(seeded: Seeded, method: str, path: str) -> bool:
    return (method, f"/api/v1{path}") in seeded.routes


def _unavailable(driver: Any) -> bool:
    return bool(driver.find_elements(By.CSS_SELECTOR, ".unavailable"))


def _console_errors(driver: Any) -> list[str]:
    return [
        e["message"]
        for e in driver.get_log("browser")
        if e["level"] == "SEVERE" and "Failed to load resource" not in e["message"]
    ]


# --- tests -----------------------------------------------------------------------------------


def test_sign_in_rejects_a_wrong_token_then_signs_in_and_out(browser: Any, seeded: Seeded) -> None:
    browser.set_window_size(1280, 800)
    browser.get(f"{seeded.url}/")  # / redirects to /ui/
    browser.execute_script("sessionStorage.clear()")
    browser.get(f"{seeded.url}/ui/")
    _ready(browser, "signin")
    assert browser.current_url.startswith(f"{seeded.url}/ui/")
    field = browser.find_element(By.ID, "token")
    field.send_keys("dlp_not_a_real_token")
    browser.find_element(By.CSS_SELECTOR, "#signin-form button[type=submit]").click()
    WebDriverWait(browser, WAIT_S).until(
        ec.text_to_be_present_in_element((By.ID, "signin-error"), "Sign-in failed")
    )
    assert "invalid or revoked token" in browser.find_element(By.ID, "signin-error").text
    assert browser.execute_script("return sessionStorage.length") == 0
    _shot(browser, "00-signin-error")

    field.clear()
    field.send_keys(seeded.admin)
    field.send_keys(Keys.ENTER)
    _ready(browser, "datasets")
    assert browser.find_element(By.ID, "who").text == "admin (admin)"
    assert browser.execute_script("return document.cookie") == ""
    assert browser.execute_script("return sessionStorage.getItem('dlp.token')") == seeded.admin
    assert browser.execute_script("return localStorage.length") == 0

    browser.find_element(By.ID, "sign-out").click()
    _ready(browser, "signin")
    assert browser.execute_script("return sessionStorage.getItem('dlp.token')") is None
    assert "You signed out" in _text(browser)


def test_dataset_commits_schema_stats_sample_and_rollback(browser: Any, seeded: Seeded) -> None:
    browser.set_window_size(1280, 800)
    _sign_in(browser, seeded.url, seeded.admin)
    assert "digits" in _text(browser)
    _shot(browser, "01-datasets")
    browser.find_element(By.LINK_TEXT, "digits").click()
    _ready(browser, "datasets/digits")
    timeline = browser.find_element(By.CSS_SELECTOR, "ol.timeline")
    items = timeline.find_elements(By.TAG_NAME, "li")
    assert len(items) == 2
    assert "second batch" in items[0].text and "head" in items[0].text
    assert "first batch" in items[1].text
    text = _text(browser)
    assert "Schema" in text and "pixel" in text and "int64" in text
    stats = browser.find_element(By.XPATH, "//section[h2='Column statistics']").text
    assert "pixel" in stats and "label" in stats and "nulls" in stats
    sample = browser.find_element(By.XPATH, "//section[h2='Sample rows']")
    cells = [td.text for td in sample.find_elements(By.TAG_NAME, "td")]
    assert "<b>two</b>" in cells  # markup in data stays text
    assert not sample.find_elements(By.TAG_NAME, "b")
    _shot(browser, "02-dataset")

    # roll back to the first commit (admin may write)
    first = seeded.commits[0]
    items[1].find_element(By.TAG_NAME, "a").click()
    _ready(browser, f"datasets/digits?commit={first}")
    button = browser.find_element(By.XPATH, "//button[starts-with(., 'Roll back to')]")
    button.click()
    WebDriverWait(browser, WAIT_S).until(ec.alert_is_present()).accept()
    WebDriverWait(browser, WAIT_S).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "ol.timeline li")) == 3
    )
    _ready(browser, "datasets/digits")
    head = seeded.backend.store.get_dataset("digits").head
    assert head not in seeded.commits
    assert seeded.backend.store.get_commit(head).row_count == 4
    rolled = seeded.backend.store.list_audit(action="dataset.rollback")
    assert rolled and rolled[0].actor == "admin"


def test_viewer_sees_no_rollback_and_no_audit(browser: Any, seeded: Seeded) -> None:
    browser.set_window_size(1280, 800)
    _sign_in(browser, seeded.url, seeded.viewer)
    _go(browser, f"datasets/digits?commit={seeded.commits[0]}")
    assert not browser.find_elements(By.XPATH, "//button[starts-with(., 'Roll back')]")
    stats = browser.find_element(By.XPATH, "//section[h2='Column statistics']").text
    assert "pixel" in stats and "dataset.read" in stats  # counts, but values only for readers
    audit_link = browser.find_element(By.CSS_SELECTOR, 'a[data-section="audit"]')
    assert not audit_link.is_displayed()
    _go(browser, "audit")
    text = _text(browser)
    assert "Forbidden" in text and "audit.view" in text
    assert not browser.find_elements(By.CSS_SELECTOR, "main table")
    _shot(browser, "03-audit-viewer-forbidden")


def _search(driver: Any, text: str, sort: str = "") -> None:
    """Run a search from the runs page's form and wait for its page."""
    for field, value in (("run-filter", text), ("run-sort", sort)):
        box = driver.find_element(By.ID, field)
        box.clear()
        box.send_keys(value)
    driver.find_element(By.CSS_SELECTOR, "#run-search button[type=submit]").click()
    _ready(driver, "runs?" + urlencode({k: v for k, v in (("filter", text), ("sort", sort)) if v}))


def _cells(driver: Any, column: int) -> list[str]:
    rows = driver.find_elements(By.CSS_SELECTOR, "#compare-form tbody tr")
    return [r.find_elements(By.TAG_NAME, "td")[column].text for r in rows]


def test_runs_search_filter_error_and_compare_overlays(browser: Any, seeded: Seeded) -> None:
    """Runs of every kind in one list; a filter filters, a malformed one is an inline error
    naming the token; two runs compared: differing params marked, curves overlaid."""
    browser.set_window_size(1280, 800)
    _sign_in(browser, seeded.url, seeded.admin)
    _go(browser, "runs")
    kinds = set(_cells(browser, 2))
    assert {"train", "tracked", "tune"} <= kinds and not any("trial" in k for k in kinds), kinds
    _shot(browser, "04-runs")

    _search(browser, 'params.lr < 0.02 and tags.team = "vision"', "metrics.val_accuracy DESC")
    assert _cells(browser, 1) == ["exp-a"]
    header = browser.find_element(By.CSS_SELECTOR, "#compare-form thead").text
    assert "param lr" in header and "val_accuracy" in header, header

    _search(browser, "params.lr <<< 1")
    error = browser.find_element(By.ID, "run-filter-error").text
    assert "position 11 ('<')" in error and "expected a value" in error, error
    assert browser.find_element(By.TAG_NAME, "h1").text == "Runs"
    assert browser.find_element(By.ID, "run-filter").get_attribute("aria-invalid") == "true"
    assert not browser.find_elements(By.ID, "compare-form")
    _shot(browser, "04a-runs-filter-error")

    _search(browser, 'kind = "tracked"')
    boxes = browser.find_elements(By.CSS_SELECTOR, 'input[name="run"]')
    ids = [b.get_attribute("value") for b in boxes]
    assert sorted(ids) == sorted(seeded.tracked)
    for box in boxes:
        box.click()
    browser.find_element(By.ID, "compare-button").click()
    _ready(browser, f"runs/compare?ids={','.join(ids)}")
    table = browser.find_element(By.CSS_SELECTOR, "table.compare")
    lr = table.find_element(By.CSS_SELECTOR, 'tr[data-row="params.lr"]')
    assert "differs" in lr.get_attribute("class") and "0.01" in lr.text and "0.05" in lr.text
    same = table.find_element(By.CSS_SELECTOR, 'tr[data-row="dataset"]')
    assert "differs" not in (same.get_attribute("class") or "")
    assert "NaN" not in table.text  # the NaN was not a final value
    figures = browser.find_elements(By.CSS_SELECTOR, "figure.metric-chart")
    assert {f.get_attribute("data-group") for f in figures} == {"loss", "accuracy", "grad_norm"}
    loss = browser.find_element(By.CSS_SELECTOR, 'figure.metric-chart[data-group="loss"]')
    assert loss.get_attribute("data-series") == "4"  # two runs x (loss, val_loss)
    legend = loss.find_element(By.CSS_SELECTOR, ".u-legend").text
    assert "exp-a loss" in legend and "exp-b val_loss" in legend, legend
    _shot(browser, "06-compare")
    assert _console_errors(browser) == []


def _range(figure: Any) -> tuple[float, float]:
    return float(figure.get_attribute("data-x-min")), float(figure.get_attribute("data-x-max"))


def _ticks(figure: Any, axis: str) -> list[float]:
    return [float(t) for t in figure.get_attribute(f"data-{axis}-ticks").split(",")]


def _figure(driver: Any, group: str) -> Any:
    return driver.find_element(By.CSS_SELECTOR, f'figure.metric-chart[data-group="{group}"]')


def test_run_charts_hover_zoom_bookkeeping_and_artifacts(browser: Any, seeded: Seeded) -> None:
    """A tracked run's charts: related keys on one chart, bookkeeping hidden until asked for,
    integer epoch ticks, a readout that follows the mouse, drag to zoom, double-click back, a
    sensible axis for an all-zero series, log scale, wall time; its artifacts listed and
    previewed (text, image, CSV)."""
    browser.set_window_size(1280, 900)
    _sign_in(browser, seeded.url, seeded.admin)
    run_id = seeded.tracked[0]
    _go(browser, f"runs/{run_id}")
    groups = [
        f.get_attribute("data-group")
        for f in browser.find_elements(By.CSS_SELECTOR, "figure.metric-chart")
    ]
    assert groups == ["accuracy", "grad_norm", "loss"], groups
    loss = _figure(browser, "loss")
    assert loss.find_element(By.TAG_NAME, "figcaption").text == "loss · val_loss"
    assert loss.get_attribute("data-x-mode") == "epoch"
    assert (
        "3 bookkeeping metric(s) hidden"
        in browser.find_element(By.CSS_SELECTOR, ".chart-note").text
    )
    assert all(t == int(t) for t in _ticks(loss, "x")), _ticks(loss, "x")
    assert _range(loss) == (0.0, 5.0)

    over = loss.find_element(By.CSS_SELECTOR, ".u-over")
    width = over.size["width"]

    def readout_of(figure: Any) -> list[str]:
        return [v.text for v in figure.find_elements(By.CSS_SELECTOR, ".u-legend .u-value")]

    def readout() -> list[str]:
        return readout_of(loss)

    ActionChains(browser).move_to_element_with_offset(over, -width // 3, 0).perform()
    left = readout()
    ActionChains(browser).move_to_element_with_offset(over, width // 3, 0).perform()
    right = readout()
    assert left[0] != right[0] and left[1] != right[1], (left, right)  # epoch and loss moved
    assert float(left[1]) > float(right[1])  # the loss falls
    grad = _figure(browser, "grad_norm")  # a NaN at epoch 2: a gap, read out as NaN
    grad_over = grad.find_element(By.CSS_SELECTOR, ".u-over")
    ActionChains(browser).move_to_element_with_offset(
        grad_over, -grad_over.size["width"] // 10, 0
    ).perform()
    assert readout_of(grad) == ["2", "NaN"], readout_of(grad)
    _shot(browser, "05-run-hover")

    ActionChains(browser).move_to_element_with_offset(
        over, -width * 2 // 5, 0
    ).click_and_hold().move_by_offset(width * 2 // 5, 0).release().perform()
    zoomed = _range(loss)
    assert 0.0 <= zoomed[0] < zoomed[1] <= 5.0 and zoomed[1] - zoomed[0] < 4, zoomed
    ActionChains(browser).double_click(over).perform()
    WebDriverWait(browser, WAIT_S).until(lambda _: _range(loss) == (0.0, 5.0))

    browser.find_element(By.ID, "chart-bookkeeping").click()
    groups = [
        f.get_attribute("data-group")
        for f in browser.find_elements(By.CSS_SELECTOR, "figure.metric-chart")
    ]
    assert groups[:3] == ["accuracy", "grad_norm", "loss"] and set(groups[3:]) == {
        "epoch",
        "restarts",
        "samples",
    }
    restarts = _ticks(_figure(browser, "restarts"), "y")  # all zeros: 0 at the bottom, not -1..1
    assert min(restarts) == 0 and max(restarts) == 1, restarts
    _shot(browser, "05a-run-bookkeeping")

    # away from the plot the legend shows the last values; smoothing (EMA 0.9) lifts the last loss
    ActionChains(browser).move_to_element(browser.find_element(By.TAG_NAME, "h1")).perform()
    assert readout_of(_figure(browser, "loss"))[1] == "0.1667"
    browser.execute_script(
        "const r = document.getElementById('chart-smoothing');"
        "r.value = '0.9'; r.dispatchEvent(new Event('input'))"
    )
    assert float(readout_of(_figure(browser, "loss"))[1]) > 0.3
    assert browser.find_element(By.ID, "chart-smoothing-value").text == "0.9"

    browser.find_element(By.ID, "chart-log").click()
    log_ticks = _ticks(_figure(browser, "loss"), "y")
    assert all(t > 0 for t in log_ticks) and max(log_ticks) / min(log_ticks) >= 10, log_ticks
    Select(browser.find_element(By.ID, "chart-x")).select_by_value("time")
    assert _figure(browser, "loss").get_attribute("data-x-mode") == "time"
    assert _range(_figure(browser, "loss")) == (0.0, 150.0)  # six epochs, 30 s apart
    _shot(browser, "05b-run-log-time")

    browser.find_element(By.PARTIAL_LINK_TEXT, "Browse and preview 3 artifacts").click()
    _ready(browser, f"runs/{run_id}/artifacts")
    files = browser.find_element(By.XPATH, "//section[h2='Files']").text
    assert "notes.txt" in files and "2.3 KiB" in files and "plots/curve.png" in files, files
    for path, kind in (
        ("notes.txt", "text"),
        ("plots/curve.png", "image"),
        ("tables/sample.csv", "table"),
    ):
        browser.find_element(By.LINK_TEXT, path).click()
        _ready(browser, f"runs/{run_id}/artifacts?path={quote(path, safe='')}")
        preview = browser.find_element(By.CSS_SELECTOR, ".artifact-preview")
        assert preview.get_attribute("data-kind") == kind
        if kind == "text":
            text = preview.find_element(By.TAG_NAME, "pre").text
            assert (
                text.startswith("line 000: the quick")
                and "line 033" in text
                and "line 035" not in text
            )
            assert "The first 1,024 bytes of 2.3 KiB" in preview.text
        elif kind == "image":
            img = preview.find_element(By.TAG_NAME, "img")
            WebDriverWait(browser, WAIT_S).until(
                lambda d, img=img: d.execute_script("return arguments[0].naturalWidth", img) == 16
            )
            assert img.get_attribute("src").startswith("blob:")
            _shot(browser, "05c-run-artifact-image")
        else:
            rows = preview.find_elements(By.CSS_SELECTOR, "tbody tr")
            assert len(rows) == 20 and "row 3, quoted" in rows[3].text
            assert preview.find_element(By.CSS_SELECTOR, "thead").text.split() == [
                "epoch",
                "loss",
                "note",
            ]
    _shot(browser, "05d-run-artifacts")
    assert _console_errors(browser) == []


def test_tuning_page_trials_sorted_and_parallel_coordinates(browser: Any, seeded: Seeded) -> None:
    """A tuning run is listed with the runs (its trials on asking), and its page has the trials
    best first with the early-stopped ones marked, and a line per trial across the params."""
    browser.set_window_size(1280, 800)
    _sign_in(browser, seeded.url, seeded.admin)
    _go(browser, "runs?trials=1")
    assert sum("trial of" in k for k in _cells(browser, 2)) == 5
    browser.find_element(By.LINK_TEXT, "search-1").click()
    _ready(browser, f"runs/{seeded.tune}")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Tuning run search-1"
    trials = browser.find_element(By.XPATH, "//section[h2='Trials']")
    rows = trials.find_elements(By.CSS_SELECTOR, "tbody tr")
    order = [r.get_attribute("data-trial").rsplit(".", 1)[1] for r in rows]
    assert order == ["t1", "t3", "t0", "t2", "t4"], order  # val_loss ascending
    stopped = [r.get_attribute("data-trial").rsplit(".", 1)[1] for r in rows
               if "early-stopped" in (r.get_attribute("class") or "")]  # fmt: skip
    assert stopped == ["t2", "t4"] and "stopped early" in rows[3].text
    assert rows[0].text.startswith("1 ") and "0.25" in rows[0].text
    lines = browser.find_elements(By.CSS_SELECTOR, "svg.pc-svg path.pc-line")
    assert len(lines) == 5
    assert (
        len(browser.find_elements(By.CSS_SELECTOR, "svg.pc-svg g.pc-axis")) == 4
    )  # 3 params + val_loss
    assert all(line.get_attribute("d").count("L") == 3 for line in lines)
    assert len(browser.find_elements(By.CSS_SELECTOR, "path.pc-line.pc-dashed")) == 2
    _shot(browser, "06a-tuning")
    browser.find_element(By.LINK_TEXT, "Compare the best 5 trials").click()
    _settled(browser, "runs/compare?ids=")
    assert _figure(browser, "loss").get_attribute("data-series") == "10"  # 5 trials x 2 keys
    _go(browser, f"runs/{seeded.tune}.t2")
    assert "Trial of\n" + seeded.tune in _text(browser)


def _settled(driver: Any, prefix: str) -> None:
    WebDriverWait(driver, WAIT_S).until(
        lambda d: d.execute_script(
            "const m = document.getElementById('main');"
            "return m.getAttribute('aria-busy') === 'false' && (m.dataset.route || '').startsWith(arguments[0])",
            prefix,
        )
    )


def test_a_running_jobs_page_follows_it_live(browser: Any, seeded: Seeded) -> None:
    """A running job's page shows its startup breakdown and its step-level progress as it comes
    (the watch long poll, no reload), renders again when an epoch ends, and once the job ends."""
    store = seeded.backend.store
    run_id, t0 = "run-ui-live", time.time() - 60
    spec = TrainingJobSpec(dataset="digits@c-1", label="label", epochs=3)
    marks = {
        "submitted": t0,
        "admitted": t0 + 0.1,
        "driver_started": t0 + 3.0,
        "first_step": t0 + 4.25,
    }
    store.create_run(Run(id=run_id, name="live-0", owner="admin", status=RunStatus.RUNNING,
                         spec_json=spec.model_dump_json(), created_at=utcnow(),
                         started_at=utcnow(), startup_json=_startup.dump(marks)))  # fmt: skip
    browser.set_window_size(1280, 800)
    _sign_in(browser, seeded.url, seeded.admin)
    _go(browser, f"runs/{run_id}")
    startup = browser.find_element(By.XPATH, "//section[h2='Startup']").text
    assert "first_step" in startup and "1.25" in startup and "4.25 s from submit" in startup

    def live_text(driver: Any) -> str:
        try:
            return str(driver.find_element(By.CSS_SELECTOR, "[data-live=progress]").text)
        except Exception:  # not there, or rendered again meanwhile
            return ""

    store.log_metric_batch([run_id] * 2, ["step/loss", "step/samples_per_s"], [0.123, 4567.0],
                           [7, 7])  # fmt: skip
    WebDriverWait(browser, WAIT_S).until(lambda d: "step 7: loss 0.123" in live_text(d))
    assert "Epoch 1" in live_text(browser) and "4,567 samples/s" in live_text(browser)
    store.log_metric_batch([run_id] * 2, ["loss", "epoch_time_s"], [0.5, 1.0], [0, 0])
    WebDriverWait(browser, WAIT_S).until(lambda d: "Epoch 2, step 7" in live_text(d))
    captions = [f.text for f in browser.find_elements(By.CSS_SELECTOR, "figure.chart figcaption")]
    assert captions == ["loss"], captions  # epoch_time_s and step/* are bookkeeping: hidden
    assert "3 bookkeeping metric(s) hidden" in _text(browser)
    store.update_run(run_id, status=RunStatus.SUCCEEDED, ended_at=utcnow())

    def ended(driver: Any) -> bool:
        try:
            shown = "SUCCEEDED" in _text(driver)
            return shown and not driver.find_elements(By.CSS_SELECTOR, "[data-live=progress]")
        except StaleElementReferenceException:  # rendered again meanwhile
            return False

    WebDriverWait(browser, WAIT_S).until(ended)
    _shot(browser, "05b-run-live")

    # A run logged from user code has no job to watch: its page reads it again while it runs.
    tracked = tracking.start_run(seeded.backend, ADMIN, tracking.TrackedRunSpec(name="live-nb"))
    _go(browser, f"runs/{tracked.run.id}")
    WebDriverWait(browser, WAIT_S).until(lambda d: d.find_elements(By.CSS_SELECTOR,
                                                                   "[data-live=tracked]"))  # fmt: skip
    assert not browser.find_elements(By.CSS_SELECTOR, "figure.chart figcaption")
    store.log_metric_batch([tracked.run.id] * 2, ["loss", "val_loss"], [0.9, 1.1], [0, 0])

    def charted(driver: Any) -> list[str]:
        try:
            return [
                f.text for f in driver.find_elements(By.CSS_SELECTOR, "figure.chart figcaption")
            ]
        except StaleElementReferenceException:
            return []

    WebDriverWait(browser, WAIT_S).until(lambda d: charted(d) == ["loss · val_loss"])
    tracking.end_run(seeded.backend, ADMIN, tracked.run.id, tracking.RunEnd(status="SUCCEEDED"))
    WebDriverWait(browser, WAIT_S).until(
        lambda d: (
            "SUCCEEDED" in _text(d) and not d.find_elements(By.CSS_SELECTOR, "[data-live=tracked]")
        )
    )


def test_models_versions_aliases_history_deployments(browser: Any, seeded: Seeded) -> None:
    browser.set_window_size(1280, 800)
    _sign_in(browser, seeded.url, seeded.admin)
    _go(browser, "models")
    row = browser.find_element(By.XPATH, "//main//tr[td/a='digits-mlp']")
    assert row.find_elements(By.TAG_NAME, "td")[2].text == "v1"  # the latest version, from the API
    browser.find_element(By.LINK_TEXT, "digits-mlp").click()
    _ready(browser, "models/digits-mlp")
    versions = browser.find_element(By.XPATH, "//section[h2='Versions']").text
    assert "v1" in versions and "production" in versions
    history = browser.find_element(By.XPATH, "//section[h2='Promotion history']").text
    assert "production" in history and "admin" in history
    # promote v1 to a second stage with the form; the history shows the move
    alias = browser.find_element(By.ID, "promote-alias")
    alias.clear()
    alias.send_keys("staging")
    browser.find_element(By.XPATH, "//button[.='Promote']").click()
    # the page renders the section again after the promotion: a found element may go stale
    WebDriverWait(browser, WAIT_S, ignored_exceptions=[StaleElementReferenceException]).until(
        lambda d: "staging" in d.find_element(By.XPATH, "//section[h2='Promotion history']").text
    )
    _ready(browser, "models/digits-mlp")
    assert seeded.backend.store.resolve_alias("digits-mlp", "staging") == 1
    deployments = browser.find_element(By.XPATH, "//section[h2='Deployments']")
    if _has(seeded, "GET", "/deployments"):
        assert "digits-mlp@1" in deployments.text and "v1 100%" in deployments.text
    else:
        assert _unavailable(browser)
    _shot(browser, "07-model")
    # a new version: the list's latest version follows; its files (the weights-only artifact's
    # manifest) are listed, model.json previewed
    latest = _add_model_version(seeded.backend, "digits-mlp", seeded.runs[0])
    _go(browser, "models")
    row = browser.find_element(By.XPATH, "//main//tr[td/a='digits-mlp']")
    assert row.find_elements(By.TAG_NAME, "td")[2].text == f"v{latest}"
    _go(browser, "models/digits-mlp")
    browser.find_elements(By.LINK_TEXT, "Artifacts")[0].click()
    _ready(browser, f"models/digits-mlp/versions/{latest}/artifacts")
    files = browser.find_element(By.XPATH, "//section[h2='Files']").text
    assert "model.json" in files and "weights.pt" in files, files
    preview = browser.find_element(By.CSS_SELECTOR, ".artifact-preview")
    assert preview.get_attribute("data-path") == "model.json"
    assert '"format": "dlplatform.model/1"' in preview.find_element(By.TAG_NAME, "pre").text
    _shot(browser, "07a-model-artifacts")


def test_lineage_graph_navigates_from_model_version_to_commit(browser: Any, seeded: Seeded) -> None:
    browser.set_window_size(1280, 800)
    _sign_in(browser, seeded.url, seeded.admin)
    _go(browser, "lineage/model_version/digits-mlp%401")
    nodes = {
        n.get_attribute("data-entity"): n for n in browser.find_elements(By.CSS_SELECTOR, "a.node")
    }
    commit = f"commit:{seeded.commits[1]}"
    assert {"model_version:digits-mlp@1", f"run:{seeded.runs[0]}", commit,
            "dataset:digits", "deployment:digits"} <= set(nodes)  # fmt: skip
    assert browser.find_elements(By.CSS_SELECTOR, "svg.graph-svg path.edge")
    current = browser.find_element(By.CSS_SELECTOR, "a.node-current").get_attribute("data-entity")
    assert current == "model_version:digits-mlp@1"
    _shot(browser, "08-lineage")
    nodes[commit].click()
    _ready(browser, f"lineage/commit/{seeded.commits[1]}")
    current = browser.find_element(By.CSS_SELECTOR, "a.node-current").get_attribute("data-entity")
    assert current == commit
    downstream = {
        n.get_attribute("data-entity") for n in browser.find_elements(By.CSS_SELECTOR, "a.node")
    }
    assert {f"run:{r}" for r in seeded.runs} <= downstream
    # keyboard: focus the run node and press Enter to walk downstream from it
    run_node = browser.find_element(By.CSS_SELECTOR, f'a.node[data-entity="run:{seeded.runs[0]}"]')
    browser.execute_script("arguments[0].focus()", run_node)
    assert browser.switch_to.active_element == run_node
    run_node.send_keys(Keys.ENTER)
    _ready(browser, f"lineage/run/{seeded.runs[0]}")
    # the commit's own page opens from the lineage page
    _go(browser, f"lineage/commit/{seeded.commits[1]}")
    browser.find_element(By.LINK_TEXT, f"Open {commit}").click()
    _ready(browser, f"datasets/digits?commit={seeded.commits[1]}")


def test_workflow_timeline_errors_and_resume_button(browser: Any, seeded: Seeded) -> None:
    browser.set_window_size(1280, 800)
    _sign_in(browser, seeded.url, seeded.admin)
    _go(browser, "workflows")
    assert _has(seeded, "GET", "/workflows/runs")
    assert seeded.workflow_run in _text(browser)
    browser.find_element(By.PARTIAL_LINK_TEXT, seeded.workflow_run).click()
    _ready(browser, f"workflows/{seeded.workflow_run}")
    text = _text(browser)
    assert "accuracy 0.4 < 0.9" in text and "evaluate" in text
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.timeline-svg rect")) == 3
    _shot(browser, "09-workflow")
    # this gateway runs without Ray: resuming answers a clear error next to the button
    browser.find_element(By.XPATH, "//button[.='Resume']").click()
    WebDriverWait(browser, WAIT_S).until(
        lambda d: "Failed:" in d.find_element(By.CSS_SELECTOR, ".action-status").text
    )
    assert "dlp up" in browser.find_element(By.CSS_SELECTOR, ".action-status").text
    assert seeded.backend.store.get_workflow_run(seeded.workflow_run).status is RunStatus.FAILED


def test_alerts_and_audit_log_for_admin(browser: Any, seeded: Seeded) -> None:
    browser.set_window_size(1280, 800)
    _sign_in(browser, seeded.url, seeded.admin)
    _go(browser, "alerts")
    assert "input drift on pixel" in _text(browser)
    _shot(browser, "10-alerts")
    browser.find_element(By.XPATH, "//button[.='Resolve']").click()
    WebDriverWait(browser, WAIT_S).until(
        lambda d: "No open alerts" in d.find_element(By.ID, "main").text
    )
    _go(browser, "alerts?all=1")
    assert "input drift on pixel" in _text(browser)

    _go(browser, "audit")
    rows = browser.find_elements(By.CSS_SELECTOR, "main tbody tr")
    assert rows
    text = _text(browser)
    assert "alerts.resolve" in text and "dataset.create" in text
    _shot(browser, "11-audit")
    browser.find_element(By.ID, "audit-action").send_keys("alerts.resolve", Keys.ENTER)
    _ready(browser, "audit?action=alerts.resolve")
    rows = browser.find_elements(By.CSS_SELECTOR, "main tbody tr")
    assert len(rows) == 1 and "alert:" in rows[0].text


def test_usage_page_totals_chart_and_a_bad_window(browser: Any, seeded: Seeded) -> None:
    seeded.backend.store.open_usage(UsageInterval(
        kind="deployment", subject="ui-usage-web", owner="admin",
        start_at=utcnow() - timedelta(hours=3), cpus=2, gpus=0))  # fmt: skip
    browser.set_window_size(1280, 800)
    _sign_in(browser, seeded.url, seeded.admin)
    _go(browser, "usage?by=deployment&since=1d&bucket=1h")
    text = _text(browser)
    assert "ui-usage-web" in text and "CPU-hours" in text
    rows = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "main tbody tr")]
    assert any(r.startswith("ui-usage-web 6") for r in rows), rows  # 2 CPUs x 3 hours
    assert browser.find_elements(By.CSS_SELECTOR, 'figure.metric-chart[data-group="cpu_hours"]')
    _go(browser, "usage?since=1h&until=2h")
    assert "inverted time range" in _text(browser)
    # a job's page shows what it held: 2 CPUs for its 9 minutes, and the peak memory sampled
    store = seeded.backend.store
    usage.record_run_start(store, store.get_run(seeded.runs[0]), 2.0, 0.0)
    store.record_peak_memory({seeded.runs[0]: 300 * 2**20})
    _go(browser, f"runs/{seeded.runs[0]}")
    assert "0.3 CPU-hours, 0 GPU-hours, peak memory 300" in _text(browser)
    assert _console_errors(browser) == []


def test_keyboard_navigation(browser: Any, seeded: Seeded) -> None:
    browser.set_window_size(1280, 800)
    _sign_in(browser, seeded.url, seeded.admin)
    browser.get(f"{seeded.url}/ui/?load={time.monotonic_ns()}#/datasets")  # focus starts at the top
    _ready(browser, "datasets")
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)
    first = browser.switch_to.active_element
    assert first.text == "Skip to content"
    for _ in range(10):
        active = browser.switch_to.active_element
        if active.text == "Runs":
            break
        active.send_keys(Keys.TAB)
    active = browser.switch_to.active_element
    assert active.text == "Runs" and active.tag_name == "a"
    outline = browser.execute_script("return getComputedStyle(arguments[0]).outlineStyle", active)
    assert outline != "none"  # a visible focus ring
    active.send_keys(Keys.ENTER)
    _ready(browser, "runs")
    assert (
        browser.find_element(By.CSS_SELECTOR, 'a[data-section="runs"]').get_attribute(
            "aria-current"
        )
        == "page"
    )
    assert browser.switch_to.active_element.get_attribute("id") == "main"
    # the run links and compare checkboxes are reachable with Tab
    browser.switch_to.active_element.send_keys(Keys.TAB)
    assert browser.switch_to.active_element.tag_name in ("a", "input")


def test_narrow_window_has_no_horizontal_overflow(browser: Any, seeded: Seeded) -> None:
    browser.set_window_size(1280, 800)
    _sign_in(browser, seeded.url, seeded.admin)
    browser.set_window_size(400, 800)
    try:
        pages = [
            "datasets", "datasets/digits", "runs", f"runs/{seeded.runs[0]}", "models",
            "models/digits-mlp", "lineage/model_version/digits-mlp%401", "workflows",
            f"workflows/{seeded.workflow_run}", "alerts", "audit", f"runs/{seeded.tune}",
            f"runs/compare?ids={','.join(seeded.tracked)}", f"runs/{seeded.tracked[0]}/artifacts",
        ]  # fmt: skip
        for i, page in enumerate(pages):
            _go(browser, page)
            _no_overflow(browser)
            bare = browser.execute_script(
                "return [...document.querySelectorAll('figure.metric-chart')]"
                ".filter((f) => !f.querySelector('.uplot canvas')).length"
            )
            assert bare == 0, f"{page}: {bare} chart(s) without a plot"
            _shot(browser, f"2{i:02d}-narrow-{page.split('/')[0]}")
        assert browser.execute_script("return window.innerWidth") <= 400
    finally:
        browser.set_window_size(1280, 800)


def test_not_found_pages_and_expired_token(browser: Any, seeded: Seeded) -> None:
    browser.set_window_size(1280, 800)
    _sign_in(browser, seeded.url, seeded.viewer)
    _go(browser, "datasets/no-such-dataset")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Not found"
    assert "no-such-dataset" in _text(browser)
    _go(browser, "runs/run-missing")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Not found"
    _go(browser, "no/such/page")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Not found"
    _shot(browser, "12-not-found")
    # an admin revokes the token (through the gateway, as `dlp users revoke` does: effective at
    # once) while the user is signed in: the next call sends them to sign-in
    import httpx

    revoked = httpx.post(
        f"{seeded.url}/api/v1/tokens/{seeded.viewer_token_id}/revoke",
        headers={"Authorization": f"Bearer {seeded.admin}"},
    )
    assert revoked.status_code == 200, revoked.text
    browser.execute_script("window.location.hash = '#/runs'")
    _ready(browser, "signin")
    assert "Your session ended" in _text(browser)
    assert browser.execute_script("return sessionStorage.getItem('dlp.token')") is None
    _shot(browser, "13-session-ended")
    assert _console_errors(browser) == []


def test_a_re_runs_page_compares_it_with_the_original(browser: Any, seeded: Seeded) -> None:
    """A re-run's page says how its metrics compare with the run it reproduces (the first
    difference named); the original's page links to its re-runs and offers "Reproduce run"."""
    store, original = seeded.backend.store, seeded.runs[0]
    first = store.get_run(original)
    store.create_run(first.model_copy(update={
        "id": "run-ui-again", "name": "mlp-0-again", "created_at": utcnow(),
        "tags": (f"reproduces:{original}",),
    }))  # fmt: skip
    store.add_edges([LineageEdge(src=f"run:{original}", dst="run:run-ui-again",
                                 relation="reproduced_by")])  # fmt: skip
    points = store.get_metrics(original)  # the same, but the loss of epoch 3
    store.log_metric_batch(["run-ui-again"] * len(points), [p.key for p in points],
                           [p.value + (0.25 if (p.key, p.step) == ("loss", 3) else 0.0)
                            for p in points], [p.step for p in points])  # fmt: skip
    browser.set_window_size(1280, 800)
    _sign_in(browser, seeded.url, seeded.admin)
    _go(browser, "runs/run-ui-again")
    section = browser.find_element(By.XPATH, "//section[h2='Reproduction']").text
    assert f"Reproduces\n{original}" in section and "different" in section, section
    assert "First difference\nepoch 3 loss: 0.25 vs 0.5" in section, section
    _shot(browser, "05c-run-reproduction")
    _go(browser, f"runs/{original}")
    link = browser.find_element(By.CSS_SELECTOR, "[data-reproduced-by] a")
    assert link.text == "run-ui-again"
    assert browser.find_elements(By.XPATH, "//button[.='Reproduce run']")


def test_runs_list_pages_through_10000_runs(
    browser: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    backend = _backend(tmp_path_factory.mktemp("ui-many") / "home")
    token = bootstrap_admin(backend.store)
    assert token is not None
    spec = TrainingJobSpec(dataset="digits@c-1", label="label").model_dump_json()
    start = utcnow()
    with backend.store._db.tx() as cur:  # fast SQL: 10,000 runs in one statement
        cur.execute(
            "INSERT INTO runs SELECT 'run-' || lpad(i::VARCHAR, 5, '0'), 'train', NULL, "
            "'job-' || i::VARCHAR, 'admin', CASE WHEN i % 7 = 0 THEN 'FAILED' ELSE 'SUCCEEDED' END, "
            "0, ?, NULL, NULL, ?::TIMESTAMPTZ + i * INTERVAL 1 SECOND, NULL, NULL, NULL, NULL, "
            "[]::VARCHAR[], NULL, 1, 1.0, 0.0 FROM range(10000) t(i)",
            [spec, start],
        )
    assert backend.store.count_runs(kind="train") == 10_000
    app = create_app(backend)
    with live_gateway(app) as url:
        browser.set_window_size(1280, 800)
        _sign_in(browser, url, token)
        began = time.perf_counter()
        _go(browser, "runs")
        first_page_s = time.perf_counter() - began
        rows = browser.find_elements(By.CSS_SELECTOR, "main tbody tr")
        assert len(rows) == 50
        assert "job-9999" in rows[0].text
        assert "Showing 1\u201350 of 10,000" in _text(browser)
        assert "page 1 of 200" in _text(browser)
        _shot(browser, "14-runs-10000")
        browser.find_element(By.CSS_SELECTOR, "a[rel=next]").click()
        _ready(browser, "runs?page=2")
        rows = browser.find_elements(By.CSS_SELECTOR, "main tbody tr")
        assert len(rows) == 50 and "job-9949" in rows[0].text
        assert "Showing 51\u2013100 of 10,000" in _text(browser)
        _go(browser, "runs?page=200")
        last = browser.find_elements(By.CSS_SELECTOR, "main tbody tr")[-1].text
        assert last.startswith("job-0 "), last
        assert not browser.find_elements(By.CSS_SELECTOR, "a[rel=next]")
    backend.store.close()
    print(f"\nruns page 1 of 10,000 rendered in {first_page_s * 1000:.0f} ms")


def test_real_platform_resume_a_failed_workflow_from_the_ui(
    browser: Any,
    gateway_url: str,
    gateway_backend: Backend,
    gateway_admin_token: str,
    tmp_path: Path,
) -> None:
    """The gateway deployed in Ray Serve, a real workflow run on the shared Ray cluster: it fails,
    is fixed, and is resumed with the UI's button."""
    from dlplatform.access import SYSTEM
    from dlplatform.inprocess import Platform
    from dlplatform.workflows import stop_manager

    folder = tmp_path / "gate"
    folder.mkdir()
    p = Platform(gateway_backend, SYSTEM)
    try:
        p.workflows.register("gated", "tests.integration.ui_wf_demo:gated")
        run = p.workflows.run("gated", {"folder": str(folder)})
        failed = p.workflows.wait(run.id, timeout_s=120)
        assert failed.run.status is RunStatus.FAILED, failed
        (folder / "fixed").write_text("ok")

        browser.set_window_size(1280, 800)
        _sign_in(browser, gateway_url, gateway_admin_token)
        _go(browser, f"workflows/{run.id}")
        assert "accuracy 0.4 is below the gate 0.9" in _text(browser)
        _shot(browser, "15-workflow-failed-serve")
        browser.find_element(By.XPATH, "//button[.='Resume']").click()
        WebDriverWait(browser, 60).until(
            lambda _: gateway_backend.store.get_workflow_run(run.id).status is not RunStatus.FAILED
        )
        done = p.workflows.wait(run.id, timeout_s=120)
        assert done.run.status is RunStatus.SUCCEEDED, done
        _go(browser, "workflows")
        _go(browser, f"workflows/{run.id}")
        assert "SUCCEEDED" in browser.find_element(By.CSS_SELECTOR, "dl.facts").text
        assert not browser.find_elements(By.XPATH, "//button[.='Resume']")
        _shot(browser, "16-workflow-resumed-serve")
        resumed = gateway_backend.store.list_audit(action="workflow.resume")
        assert resumed and resumed[0].actor == "admin"
    finally:
        stop_manager(gateway_backend.settings)
