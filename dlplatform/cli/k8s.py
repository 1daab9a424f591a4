"""``dlp k8s``: render the KubeRay manifests for a deployment, and validate cluster files offline."""

from __future__ import annotations

from pathlib import Path

import typer

from dlplatform.cli._common import JsonOpt, emit, fail, handle_errors
from dlplatform.errors import InvalidInput

app = typer.Typer(no_args_is_help=True, help="Kubernetes (KubeRay) manifests of the platform.")


@app.command("render")
@handle_errors
def render(
    image: str = typer.Option(
        ..., "--image", help="Platform image, tagged <ray version>[-suffix]."
    ),
    namespace: str = typer.Option(..., "--namespace", help="Kubernetes namespace of every object."),
    out: Path = typer.Option(..., "--out", help="Directory for the rendered YAML files."),
    cpu_workers: int = typer.Option(8, "--cpu-workers", help="Most CPU worker pods (autoscaled)."),
    gpu_workers: int = typer.Option(
        4, "--gpu-workers", help="Most GPU worker pods; 0: no GPU group."
    ),
    gpu_type: str = typer.Option(
        "NVIDIA-A10G", "--gpu-type", help="GPU model (node label nvidia.com/gpu.product)."
    ),
    gpu_image: str | None = typer.Option(
        None, "--gpu-image", help="GPU workers' image (default: IMAGE with -gpu on its tag)."
    ),
    lab_users: list[str] | None = typer.Option(
        None,
        "--lab-user",
        help="One lab per platform user (repeatable): dlp-lab-NAME, reading Secret dlp-lab-NAME "
        "(keys token, jupyter_token). Default: the template's user 'default'.",
    ),
    gateway_host: str = typer.Option(
        "dlplatform.example.com", "--gateway-host", help="Public host of the gateway (TLS Ingress)."
    ),
    operator_namespace: str = typer.Option(
        "ray-system", "--operator-namespace", help="Namespace of the KubeRay operator."
    ),
    job_team: str = typer.Option(
        "default", "--job-team", help="Team of rayjob.yaml: a Ray cluster of its own per job."
    ),
    job_namespace: str | None = typer.Option(
        None, "--job-namespace", help="The team's namespace (default: dlp-team-TEAM)."
    ),
    source: Path | None = typer.Option(
        None, "--source", help="Templates folder (default: the repository's clusters/kuberay)."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite files that exist in --out."),
    as_json: bool = JsonOpt,
) -> None:
    """Fill in image, namespace, workers, GPU type, gateway host, labs and team job; validate;
    write to --out."""
    from dlplatform import clusters  # heavy: yaml and Ray's config checks, this command only

    users = lab_users or [clusters.LAB_USER_TEMPLATE]
    files = clusters.render(
        image,
        namespace,
        cpu_workers,
        gpu_workers,
        gpu_type,
        gpu_image=gpu_image,
        lab_users=users,
        gateway_host=gateway_host,
        operator_namespace=operator_namespace,
        job_team=job_team,
        job_namespace=job_namespace,
        source=source,
    )
    job_ns = job_namespace or f"dlp-team-{job_team}"
    out = out.expanduser()
    if out.exists() and not out.is_dir():
        fail(f"--out {out} exists and is not a directory")
    existing = [name for name in files if (out / name).exists()]
    if existing and not force:
        fail(f"{out} already holds {', '.join(existing)}; pass --force to overwrite")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(out / name)
        written.append(str(out / name))
    labs = [{"user": u, "secret": clusters.lab_secret(u)} for u in users]
    job = {
        "team": job_team,
        "namespace": job_ns,
        "token_secret": clusters.job_token_secret(job_team),
    }
    if as_json:
        report = {"directory": str(out), "files": written, "namespace": namespace, "image": image}
        emit({**report, "gateway_host": gateway_host, "labs": labs, "job": job}, True)
        return
    for path in written:
        print(path)
    print(f"apply with: kubectl apply -k {out}")
    print(f"the gateway: https://{gateway_host} (TLS Secret dlplatform-gateway-tls in {namespace})")
    for lab in labs:
        print(
            f"lab of {lab['user']}: kubectl -n {namespace} create secret generic {lab['secret']} "
            f"--from-literal=token=<token of `dlp users create {lab['user']} --role "
            'data-scientist`> --from-literal=jupyter_token="$(openssl rand -hex 16)"'
        )
    print(
        f"team {job_team}'s jobs (rayjob.yaml, namespace {job_ns}): kubectl -n {job_ns} create "
        f"secret generic {job['token_secret']} --from-literal=token=<the team's platform token>"
    )


@app.command("validate")
@handle_errors
def validate(
    paths: list[Path] = typer.Argument(
        ..., help="Cluster files or folders (ray up or KubeRay YAML)."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Validate cluster files offline (Ray's config checks, KubeRay CRDs, Kubernetes schemas)."""
    from dlplatform import clusters  # heavy: yaml and Ray's config checks, this command only

    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(clusters.cluster_files(path))
        elif path.is_file():
            files.append(path)
        else:
            fail(f"{path} does not exist")
    results = []
    for path in files:
        try:
            clusters.validate_file(path)
            results.append({"file": str(path), "ok": True, "problem": ""})
        except InvalidInput as exc:
            results.append({"file": str(path), "ok": False, "problem": exc.message})
    emit(results, as_json, columns=["file", "ok", "problem"], title="cluster files")
    bad = [r for r in results if not r["ok"]]
    if bad:
        fail(f"{len(bad)} of {len(results)} files are invalid")
