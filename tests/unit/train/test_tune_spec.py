"""The search-space parser, the tuning spec, trial specs and the CLI's input checks (no Ray)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from dlplatform.cli import app
from dlplatform.errors import InvalidInput
from dlplatform.train._lifecycle import Holding
from dlplatform.train.tune import (
    ACCEPTED_FORMS,
    Distribution,
    TuningJobSpec,
    build_spec,
    builtin_metrics,
    parse_distribution,
    parse_space_arg,
    trial_spec,
)

TRAINING = {"dataset": "digits", "label": "target", "model": "mlp", "workers": 1, "epochs": 4}


@pytest.mark.parametrize(
    ("text", "kind", "args"),
    [
        ("uniform(0.1,0.5)", "uniform", (0.1, 0.5)),
        (" loguniform( 1e-4 , 1e-1 ) ", "loguniform", (1e-4, 1e-1)),
        ("randint(2,9)", "randint", (2, 9)),
        ("choice(64,128)", "choice", (64, 128)),
        ("choice(relu,'tanh',true,0.5)", "choice", ("relu", "tanh", True, 0.5)),
        ("grid(0.01)", "grid", (0.01,)),
    ],
)
def test_parse_accepted_forms(text: str, kind: str, args: tuple[object, ...]) -> None:
    dist = parse_distribution(text)
    assert dist == Distribution(kind, args)  # type: ignore[arg-type]
    assert type(dist.args[0]) is type(args[0])


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("loguniform(1e-4)", "exactly two numbers"),
        ("uniform(1,)", "exactly two numbers"),
        ("uniform(0.5,0.1)", "LOW must be below HIGH"),
        ("loguniform(0,1)", "0 < LOW"),
        ("randint(1.5,4)", "randint takes integers"),
        ("uniform(a,b)", "not a finite number"),
        ("uniform(nan,1)", "not a finite number"),
        ("choice()", "one or more"),
        ("grid(1,,2)", "one or more"),
        ("choice(1,1)", "must not repeat"),
        ("normal(0,1)", "unknown distribution 'normal'"),
        ("0.1", "malformed distribution"),
        ("choice(1,2", "malformed distribution"),
    ],
)
def test_parse_rejects_with_the_accepted_forms(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=r"accepted forms|must not repeat") as info:
        parse_distribution(text)
    assert why in str(info.value)
    if "repeat" not in why:
        assert ACCEPTED_FORMS in str(info.value)


def test_to_tune_domains() -> None:
    from ray import tune

    assert isinstance(
        parse_distribution("loguniform(1e-4,1e-1)").to_tune(), tune.search.sample.Float
    )
    assert isinstance(parse_distribution("randint(1,4)").to_tune(), tune.search.sample.Integer)
    assert parse_distribution("grid(1,2)").to_tune() == {"grid_search": [1, 2]}
    assert parse_distribution("choice(a,b)").to_tune().categories == ["a", "b"]


def test_spec_counts_trials_and_resources() -> None:
    spec = TuningJobSpec(
        training=TRAINING,  # type: ignore[arg-type]
        space={"lr": "loguniform(1e-4,1e-1)", "hidden": "grid(16,32,64)"},
        samples=2,
        concurrency=4,
    )
    assert spec.num_trials == 6 and spec.effective_concurrency == 4
    held = Holding.of_spec(spec.training, spec.effective_concurrency)  # what the run records
    assert held.workers == 4 and held.cpus == 4.0 and spec.scheduler == "asha"
    small = spec.model_copy(update={"samples": 1, "space": {"lr": "grid(0.1,0.2)"}})
    assert small.num_trials == 2 and small.effective_concurrency == 2


def test_trial_spec_applies_fields_and_params() -> None:
    base = TuningJobSpec(training=TRAINING, space={"lr": "uniform(0.1,0.2)"}).training  # type: ignore[arg-type]
    trial = trial_spec(base, {"lr": 0.15, "batch_size": 16, "hidden": 32})
    assert trial.lr == 0.15 and trial.batch_size == 16 and trial.params == {"hidden": 32}
    assert trial.epochs == base.epochs and trial.dataset == base.dataset


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"samples": 0}, "samples"),
        ({"space": {}}, "search space is empty"),
        ({"space": {"lr": "logunifrom(1e-4,1e-1)"}}, "accepted forms"),
        ({"space": {"epochs": "randint(1,5)"}}, "'epochs' cannot be searched"),
        ({"space": {"batch_size": "choice(0,32)"}}, "batch_size"),
        ({"space": {"lr": "uniform(0.1,0.2)"}, "mode": "maximize"}, "mode"),
        ({"space": {"lr": "uniform(0.1,0.2)"}, "scheduler": "hyperband"}, "scheduler"),
        ({"space": {"lr": "uniform(0.1,0.2)"}, "metric": "val loss"}, "invalid metric name"),
        ({"space": {"lr": "uniform(0.1,0.2)"}, "concurrency": 0}, "concurrency"),
    ],
)
def test_bad_specs_are_invalid_input(fields: dict[str, object], message: str) -> None:
    values = {"training": TRAINING, "space": {"lr": "uniform(0.1,0.2)"}, **fields}
    with pytest.raises(InvalidInput, match=message):
        build_spec(**values)


def test_builtin_metric_names() -> None:
    assert {"val_loss", "val_accuracy", "loss"} <= set(builtin_metrics("classification", True))
    assert "val_rmse" in builtin_metrics("regression", True)
    assert "val_loss" not in builtin_metrics("classification", False)


def test_space_arg() -> None:
    assert parse_space_arg("lr=loguniform(1e-4,1e-1)") == ("lr", "loguniform(1e-4,1e-1)")
    assert parse_space_arg("hidden=choice(64,128)") == ("hidden", "choice(64,128)")
    with pytest.raises(InvalidInput, match="not KEY=DIST"):
        parse_space_arg("loguniform(1e-4,1e-1)")
    with pytest.raises(InvalidInput, match=r"--space lr: .*accepted forms"):
        parse_space_arg("lr=loguniform(1e-4")


def test_cli_rejects_bad_space_and_zero_samples(tmp_path: object) -> None:
    runner = CliRunner()
    env = {"DLP_TOKEN": "", "RAY_ADDRESS": ""}
    base = ["tune", "submit", "--home", str(tmp_path), "--dataset", "digits", "--label", "target"]
    bad = runner.invoke(app, [*base, "--space", "lr=uniform(1)"], env=env)
    assert bad.exit_code == 1
    assert "accepted forms" in bad.output and "Traceback" not in bad.output
    zero = runner.invoke(app, [*base, "--space", "lr=uniform(0.1,0.2)", "--samples", "0"], env=env)
    assert zero.exit_code == 1 and "samples" in zero.output
    assert len(zero.output.strip().splitlines()) == 1


def test_tuning_routes_without_ray(backend: object, admin_token: str) -> None:
    import warnings

    from dlplatform.api.app import create_app
    from dlplatform.metadata import MetricPoint, Run, RunStatus
    from dlplatform.metadata.records import utcnow

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    admin = {"Authorization": f"Bearer {admin_token}"}
    spec = build_spec(training=TRAINING, space={"lr": "uniform(0.1,0.2)"}, samples=3)
    backend.store.create_run(  # type: ignore[attr-defined]
        Run(
            id="run-tune1",
            kind="tune",
            owner="admin",
            status=RunStatus.SUCCEEDED,
            spec_json=spec.model_dump_json(),
            created_at=utcnow(),
        )
    )
    for i, (status, loss) in enumerate([("STOPPED", 2.0), ("SUCCEEDED", 0.5)]):
        rid = f"run-tune1.t{i}"
        backend.store.create_run(  # type: ignore[attr-defined]
            Run(
                id=rid,
                kind="trial",
                parent_id="run-tune1",
                owner="admin",
                status=status,
                created_at=utcnow(),
            )
        )
        backend.store.log_params(rid, {"space.lr": (0.1, 0.15)[i]})  # type: ignore[attr-defined]
        backend.store.log_metrics(  # type: ignore[attr-defined]
            [MetricPoint(run_id=rid, key=k, value=loss, step=0) for k in ("val_loss", "loss")]
        )
    with TestClient(create_app(backend), base_url="http://127.0.0.1") as client:  # type: ignore[arg-type]
        assert client.get("/api/v1/tuning/jobs").status_code == 401
        bad = client.post("/api/v1/tuning/jobs", headers=admin,
                          json={"training": TRAINING, "space": {"lr": "loguniform(0,1)"}})  # fmt: skip
        assert bad.status_code == 422 and "accepted forms" in bad.json()["message"]
        zero = client.post("/api/v1/tuning/jobs", headers=admin,
                           json={"training": TRAINING, "space": {"lr": "uniform(0.1,0.2)"},
                                 "samples": 0})  # fmt: skip
        assert zero.status_code == 422 and "samples" in zero.json()["message"]
        got = client.get("/api/v1/tuning/jobs/run-tune1", headers=admin).json()
        assert [t["id"] for t in got["trials"]] == ["run-tune1.t1", "run-tune1.t0"]  # by val_loss
        assert got["trials"][1]["status"] == "STOPPED" and got["trials"][0]["params"] == {
            "lr": 0.15
        }
        assert client.get("/api/v1/tuning/jobs/run-tune1.t0", headers=admin).status_code == 404
        assert [
            j["run"]["id"] for j in client.get("/api/v1/tuning/jobs", headers=admin).json()
        ] == ["run-tune1"]
