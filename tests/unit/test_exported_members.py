"""Each package's public names: every name in ``__all__`` resolves (lazily loaded ones too), and
the contracts the SDK imports load neither Ray nor torch."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PACKAGES = [
    "dlplatform",
    "dlplatform.client",
    "dlplatform.metadata",
    "dlplatform.data",
    "dlplatform.train",
    "dlplatform.models",
    "dlplatform.serve",
    "dlplatform.workflows",
    "dlplatform.lab",
    "dlplatform.api",
    "dlplatform.cli",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_every_public_name_resolves(name: str) -> None:
    package = importlib.import_module(name)
    exported = list(package.__all__)
    assert len(exported) == len(set(exported)), "a name is listed twice"
    lazy = getattr(package, "_EXPORTS", None)
    if lazy is not None:
        assert set(lazy) <= set(exported), set(lazy) - set(exported)
    for member in exported:
        assert getattr(package, member) is not None, f"{name}.{member}"
    with pytest.raises(AttributeError):
        _ = package.no_such_name


def test_the_sdk_and_its_contracts_load_no_ray_or_torch() -> None:
    code = (
        "import sys\n"
        "import dlplatform as dlp\n"
        "import dlplatform.train, dlplatform.serve, dlplatform.workflows, dlplatform.data\n"
        "import dlplatform.models\n"
        "from dlplatform.train.spec import TrainingJobSpec\n"
        "from dlplatform.train.tune import TuningJobSpec\n"
        "from dlplatform.models.spec import ModelSignature\n"
        "from dlplatform.models.registry import resolve_version\n"
        "from dlplatform.serve.spec import DeploymentSpec\n"
        "from dlplatform.workflows.spec import WorkflowRunDetail\n"
        "p = dlp.connect(url='http://127.0.0.1:9', token='t')\n"
        "p.datasets, p.training, p.tuning, p.models, p.serving, p.workflows, p.lineage\n"
        "print(sorted(m for m in ('ray', 'torch') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
