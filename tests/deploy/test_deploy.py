"""Static checks of the deployment files (nothing is built here: tests/test_container.py
builds the image and runs it, through deploy/smoke).

Optional tools, each skipped with a reason when absent:

* ``docker-compose`` (Debian package ``docker-compose``), the ``docker compose``
  plugin or ``podman-compose``, for ``config`` validation;
* the ``kubernetes-validate`` Python package, which bundles the Kubernetes JSON
  schemas and works offline.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

yaml = pytest.importorskip("yaml", reason="pyyaml is needed to read the deployment files")

from vectune.ops.schedule import Cron  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_EMBEDDED = ROOT / "docker-compose.embedded.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
ENV_EXAMPLE = DEPLOY / "vectune.env.example"
SETTINGS_PY = ROOT / "src" / "vectune" / "config" / "settings.py"
ERRORS_PY = ROOT / "src" / "vectune" / "errors.py"

# The CLI's subcommands, read from the click group itself.
from vectune.cli import cli as _cli  # noqa: E402

CLI_COMMANDS = set(_cli.commands)

# Settings the deployment files use that the core is adding (schedule.py / metrics.py).
PENDING_SETTINGS: set[str] = set()
# Variables that are not vectune settings but are allowed in the files.
BUILD_ONLY = {"TORCH_VARIANT", "VECTUNE_IMAGE_TAG"}  # compose interpolation for the build
NON_SETTINGS = {"ALIAS"}  # the rollback Job's $(ALIAS)

MIN_QDRANT = (1, 16, 0)
K8S_VERSIONS = ("1.29.0", "1.37.0")  # oldest supported, newest bundled


# ----------------------------------------------------------------------------- helpers
def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def k8s_files() -> list[Path]:
    return sorted(K8S.glob("*.yaml"))


def k8s_objects() -> list[tuple[Path, dict[str, Any]]]:
    return [(p, d) for p in k8s_files() for d in load_yaml_docs(p) if d.get("kind") != "Kustomization"]


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for _, d in k8s_objects() if d["kind"] == kind]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return obj["spec"]["template"]["spec"]


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def exec_or_shell(args: str) -> list[str]:
    args = args.strip()
    if args.startswith("["):
        value = json.loads(args)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value)
        return value
    return shlex.split(args)


def env_example_names() -> set[str]:
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), flags=re.M))


def settings_env_names() -> dict[str, set[str]]:
    """Env names of every setting: {flat name: {NAME, ...}} (flat, conventional and top-level names)."""
    from vectune.config.settings import CONVENTIONAL_ENV, FLAT, TOP_LEVEL, env_name

    out: dict[str, set[str]] = {name: {env_name(name)} for name in TOP_LEVEL}
    for flat in FLAT:
        out[flat] = {env_name(flat), *CONVENTIONAL_ENV.get(flat, ())}
    out["teacher"] = {"VECTUNE_TEACHER", "VECTUNE_TEACHER_CONFIG", "VECTUNE_OFFLINE_METHOD"}
    return out


def extra_env_names() -> set[str]:
    """Env names settings.py reads directly (teacher config: its table of flat names, and direct reads)."""
    from vectune.config.settings import OPENAI_TEACHER_ENV

    text = SETTINGS_PY.read_text()
    direct = set(re.findall(r"(?:os\.environ\.get|_env_secret)\(\"([A-Z][A-Z0-9_]*)\"", text))
    return direct | set(OPENAI_TEACHER_ENV.values())


def known_settings() -> set[str]:
    names = set().union(*settings_env_names().values()) | extra_env_names()
    return names | PENDING_SETTINGS


def qdrant_version(image: str) -> tuple[int, ...]:
    m = re.fullmatch(r"(?:docker\.io/)?qdrant/qdrant:v?(\d+)\.(\d+)\.(\d+)(?:-[\w.]+)?", image)
    assert m, f"qdrant image {image!r} is not pinned to a vX.Y.Z tag"
    return tuple(int(g) for g in m.groups())


# ----------------------------------------------------------------------------- YAML
@pytest.mark.parametrize("path", [COMPOSE, COMPOSE_EMBEDDED, *k8s_files()], ids=lambda p: str(p.relative_to(ROOT)))
def test_yaml_parses(path: Path) -> None:
    docs = load_yaml_docs(path)
    assert docs, f"{path} is empty"
    assert all(isinstance(d, dict) for d in docs)


# ----------------------------------------------------------------------------- compose
def test_compose_qdrant_service() -> None:
    q = compose()["services"]["qdrant"]
    assert qdrant_version(q["image"]) >= MIN_QDRANT
    hc = q["healthcheck"]
    test = hc["test"]
    text = " ".join(test) if isinstance(test, list) else test
    assert "curl" not in text and "wget" not in text, "the qdrant image has neither curl nor wget"
    assert "/dev/tcp/" in text and "6333" in text
    assert any(v.rstrip("/").endswith("/qdrant/storage") or ":/qdrant/storage" in v for v in q["volumes"])
    # The server requires the key vectune sends, both from QDRANT_API_KEY in .env; never empty
    # (Qdrant treats an empty key as no key).
    assert re.fullmatch(r"\$\{QDRANT_API_KEY:\?.+\}", q["environment"]["QDRANT__SERVICE__API_KEY"])


def test_compose_vectune_service() -> None:
    c = compose()
    v = c["services"]["vectune"]
    assert (ROOT / v["build"]["context"] / v["build"]["dockerfile"]).resolve() == DOCKERFILE
    assert v["depends_on"]["qdrant"]["condition"] == "service_healthy"
    env_files = v["env_file"] if isinstance(v["env_file"], list) else [v["env_file"]]
    assert ".env" in [e if isinstance(e, str) else e["path"] for e in env_files]
    env = v["environment"]
    assert env["QDRANT_URL"] == "http://qdrant:6333"
    m = re.fullmatch(r"\$\{VECTUNE_SCHEDULE:-(.+)\}", env["VECTUNE_SCHEDULE"])
    assert m and m.group(1) == "0 3 * * *"
    Cron.parse(m.group(1))
    mounts = {vol.split(":")[1] for vol in v["volumes"]}
    assert {"/data/models", "/data/work"} <= mounts
    for vol in v["volumes"]:
        assert vol.split(":")[0] in c["volumes"], f"named volume {vol} not declared"
    # The image's root file system stays read-only; only the volumes and a tmpfs are written.
    assert v["read_only"] is True and "/tmp" in v["tmpfs"]


def test_compose_embedded_override() -> None:
    """The override only unsets the server URL (embedded Qdrant on the work volume)."""
    over = yaml.safe_load(COMPOSE_EMBEDDED.read_text())
    assert set(over["services"]) == {"vectune"}
    assert over["services"]["vectune"] == {"environment": {"QDRANT_URL": ""}}
    env_path = next(a for w, a in dockerfile_instructions() if w == "ENV" and "VECTUNE_QDRANT_PATH=" in a)
    assert "VECTUNE_QDRANT_PATH=/data/work/qdrant" in env_path, "embedded Qdrant must live on a volume"
    text = COMPOSE_EMBEDDED.read_text()
    assert "--no-deps" in text and "-f docker-compose.embedded.yml" in text


def _compose_cmd() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("podman-compose"):
        return ["podman-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def test_docker_compose_config(tmp_path: Path) -> None:
    cmd = _compose_cmd()
    if cmd is None:
        pytest.skip(
            "none of docker-compose, the docker compose plugin or podman-compose is installed "
            "(apt-get install docker-compose)"
        )
    shutil.copy(COMPOSE, tmp_path / "docker-compose.yml")
    shutil.copytree(DEPLOY, tmp_path / "deploy")
    # What the README tells users to do: copy the example, set the Qdrant key.
    key = "test-key-0123456789"
    text = re.sub(r"^QDRANT_API_KEY=.*$", f"QDRANT_API_KEY={key}", ENV_EXAMPLE.read_text(), flags=re.M)
    (tmp_path / ".env").write_text(text)
    env_vars = {k: v for k, v in os.environ.items() if k not in ("QDRANT_API_KEY", "VECTUNE_SCHEDULE")}
    proc = subprocess.run(
        [*cmd, "-f", "docker-compose.yml", "config"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env=env_vars,
    )
    assert proc.returncode == 0, proc.stderr
    resolved = yaml.safe_load(proc.stdout)
    assert resolved["services"]["qdrant"]["environment"]["QDRANT__SERVICE__API_KEY"] == key
    vectune = resolved["services"]["vectune"]
    assert vectune["environment"]["QDRANT_URL"] == "http://qdrant:6333"
    assert vectune["environment"]["VECTUNE_SCHEDULE"] == "0 3 * * *"
    # docker compose folds the env_file into environment; podman-compose passes it to podman as is.
    assert vectune["environment"].get("VECTUNE_ALIAS", "docs") == "docs"

    # The embedded override: QDRANT_URL unset, everything else as in the base file.
    shutil.copy(COMPOSE_EMBEDDED, tmp_path / COMPOSE_EMBEDDED.name)
    proc = subprocess.run(
        [*cmd, "-f", "docker-compose.yml", "-f", COMPOSE_EMBEDDED.name, "config"], cwd=tmp_path,
        capture_output=True, text=True, timeout=120, env=env_vars,
    )
    assert proc.returncode == 0, proc.stderr
    vectune = yaml.safe_load(proc.stdout)["services"]["vectune"]
    assert vectune["environment"]["QDRANT_URL"] in ("", None)
    assert vectune["environment"]["VECTUNE_SCHEDULE"] == "0 3 * * *"


# ----------------------------------------------------------------------------- env vars
def test_env_example_documents_every_setting() -> None:
    documented = env_example_names()
    missing = sorted(
        f"{field} ({' or '.join(sorted(names))})"
        for field, names in settings_env_names().items()
        if not names & documented
    )
    assert not missing, f"settings missing from {ENV_EXAMPLE.name}: {missing}"
    missing_extra = sorted(extra_env_names() - documented)
    assert not missing_extra, f"teacher variables missing from {ENV_EXAMPLE.name}: {missing_extra}"


def test_env_example_names_are_real() -> None:
    unknown = sorted(env_example_names() - known_settings() - BUILD_ONLY)
    assert not unknown, f"{ENV_EXAMPLE.name} documents variables vectune does not read: {unknown}"


def _referenced_env() -> dict[str, set[str]]:
    refs: dict[str, set[str]] = {}

    def add(where: str, names: set[str]) -> None:
        for n in names:
            refs.setdefault(n, set()).add(where)

    c = compose()
    add("docker-compose.yml environment", set(c["services"]["vectune"].get("environment", {})))
    add("docker-compose.yml interpolation", set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE.read_text())))
    for path, obj in k8s_objects():
        where = str(path.relative_to(ROOT))
        if obj["kind"] == "ConfigMap":
            add(where, set(obj.get("data", {})))
        if obj["kind"] == "Secret":
            add(where, set(obj.get("stringData", {})) | set(obj.get("data", {})))
        if obj["kind"] in ("CronJob", "Job"):
            for ctr in pod_spec(obj)["containers"]:
                add(where, {e["name"] for e in ctr.get("env", [])})
    for word, args in dockerfile_instructions():
        if word == "ENV":
            add("Dockerfile ENV", {n for n in re.findall(r"([A-Z][A-Z0-9_]*)=", args) if n.startswith("VECTUNE_")})
    return refs


def test_every_referenced_env_var_is_a_setting() -> None:
    allowed = known_settings() | BUILD_ONLY | NON_SETTINGS
    unknown = {n: sorted(w) for n, w in _referenced_env().items() if n not in allowed}
    assert not unknown, f"not vectune settings: {unknown}"


def test_every_referenced_setting_is_documented() -> None:
    documented = env_example_names()
    undocumented = {
        n: sorted(w) for n, w in _referenced_env().items() if n not in documented and n not in NON_SETTINGS
    }
    assert not undocumented, f"used but not in {ENV_EXAMPLE.name}: {undocumented}"


def test_env_example_schedule_parses() -> None:
    m = re.search(r"^#?\s*VECTUNE_SCHEDULE=(.+)$", ENV_EXAMPLE.read_text(), flags=re.M)
    assert m
    Cron.parse(m.group(1).strip())


# ----------------------------------------------------------------------------- Dockerfile
def _resolve_args(text: str, args: dict[str, str]) -> str:
    """Expand ${ARG}/$ARG with the build args' defaults, also inside those defaults."""
    for _ in range(10):
        new = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), text)
        if new == text:
            break
        text = new
    return text


def test_dockerfile_commands_are_real_subcommands() -> None:
    ins = dockerfile_instructions()
    entry = [exec_or_shell(a) for w, a in ins if w == "ENTRYPOINT"][-1]
    cmd = [exec_or_shell(a) for w, a in ins if w == "CMD"][-1]
    assert entry == ["vectune"]
    assert cmd == ["serve"]
    assert cmd[0] in CLI_COMMANDS
    hc = [a for w, a in ins if w == "HEALTHCHECK"][-1]
    m = re.search(r"\bCMD\s+(.*)$", hc)
    assert m, hc
    check = exec_or_shell(m.group(1))
    assert check[0] == "vectune" and check[1] in CLI_COMMANDS and check[1] == "check"
    assert "--timeout=" in hc and "--interval=" in hc
    assert [a for w, a in ins if w == "ENTRYPOINT"][-1].startswith("["), "ENTRYPOINT must be exec form for signals"


def test_dockerfile_base_torch_user_volumes() -> None:
    ins = dockerfile_instructions()
    args: dict[str, str] = {}
    for w, a in ins:
        if w == "ARG" and "=" in a:
            k, _, v = a.partition("=")
            args.setdefault(k.strip(), v.strip().strip('"'))
    froms = [_resolve_args(a.split()[0], args) for w, a in ins if w == "FROM"]
    assert froms and all(f == "python:3.11-slim" for f in froms), froms
    assert args["TORCH_VARIANT"] == "cpu"

    runs = [_resolve_args(a, args) for w, a in ins if w == "RUN"]
    torch_idx = next(i for i, r in enumerate(runs) if "download.pytorch.org/whl/cpu" in r)
    assert "--index-url" in runs[torch_idx] and "torch" in runs[torch_idx]
    pkg_idx = next(i for i, r in enumerate(runs) if re.search(r"pip install \"?/src", r))
    assert torch_idx < pkg_idx, "torch must be installed from the CPU index before the package"

    # Every stage starts from the BASE build arg (so deploy/smoke can swap in a local stand-in),
    # and nothing site-specific (CA bundles, pip configs) is copied in: the stand-in carries those.
    assert all(a.split()[0] == "${BASE}" for w, a in ins if w == "FROM"), "every FROM must be ${BASE}"
    for w, a in ins:
        if w in ("COPY", "ADD"):
            assert not re.search(r"\.crt|\.pem|pip\.conf|pip\.ini", a), f"site config baked into the image: {w} {a}"

    users = [a for w, a in ins if w == "USER"]
    assert users, "the image must not run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "USER must be numeric (runAsNonRoot) and not root"
    assert any(w == "RUN" and "useradd" in a and "vectune" in a for w, a in ins)

    vols = [v for w, a in ins if w == "VOLUME" for v in exec_or_shell(a)]
    assert {"/data/models", "/data/work"} <= set(vols)
    env = " ".join(a for w, a in ins if w == "ENV")
    assert "VECTUNE_MODEL_DIR=/data/models" in env and "VECTUNE_WORK_DIR=/data/work" in env

    # Kubernetes runs as the same uid.
    for obj in by_kind("CronJob") + by_kind("Job"):
        assert pod_spec(obj)["securityContext"]["runAsUser"] == int(uid)


def test_dockerignore_allow_list() -> None:
    def rules(p: Path) -> list[str]:
        return [ln.strip() for ln in p.read_text().splitlines() if ln.strip() and not ln.startswith("#")]

    top = rules(ROOT / ".dockerignore")
    assert top == rules(DEPLOY / "Dockerfile.dockerignore"), "the two .dockerignore files differ"
    assert top[0] == "*", "start from ignoring everything"
    allowed = {r[1:].rstrip("/") for r in top if r.startswith("!")}
    assert {"pyproject.toml", "src"} <= allowed
    assert not allowed & {".env", ".git", ".venv", ".vectune"}


def test_build_context_is_enough_for_pip_install(tmp_path: Path) -> None:
    """Build a wheel from only what .dockerignore lets into the context, as `pip install .` would."""
    import importlib.util
    import sys
    import zipfile

    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is needed to build the package offline (--no-build-isolation)")
    import setuptools

    if importlib.util.find_spec("wheel") is None and tuple(map(int, setuptools.__version__.split(".")[:2])) < (70, 1):
        pytest.skip("wheel (or setuptools >= 70.1) is needed to build a wheel offline")
    rules = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln.strip()[:1] == "!"]
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    for rule in rules:
        src = ROOT / rule[1:].rstrip("/")
        if src.is_dir():
            shutil.copytree(src, ctx / src.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        elif src.is_file():
            shutil.copy(src, ctx / src.name)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(ctx),
         "-w", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (whl,) = tmp_path.glob("vectune-*.whl")
    names = set(zipfile.ZipFile(whl).namelist())
    pkg = ROOT / "src" / "vectune"
    expected = {
        str(p.relative_to(pkg.parent))
        for p in pkg.rglob("*")
        if p.is_file() and (p.suffix == ".py" or p.parent.name == "data") and "__pycache__" not in p.parts
    }
    assert expected <= names, f"missing from the wheel: {sorted(expected - names)}"


# ----------------------------------------------------------------------------- Kubernetes
def _validator():
    kv = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is not installed (pip install kubernetes-validate)"
    )
    return kv


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_k8s_manifests_validate(version: str) -> None:
    kv = _validator()
    objs = k8s_objects()
    assert objs
    for path, obj in objs:
        try:
            kv.validate(obj, version, strict=True)
        except kv.ValidationError as exc:  # pragma: no cover - the message is the point
            pytest.fail(f"{path.name} {obj['kind']}: {exc}")


def test_k8s_validator_catches_typos() -> None:
    kv = _validator()
    bad = yaml.safe_load((K8S / "cronjob.yaml").read_text())
    bad["spec"]["concurrencyPolice"] = "Forbid"
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, K8S_VERSIONS[-1], strict=True)


def test_kustomization() -> None:
    k = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert k["kind"] == "Kustomization"
    listed = set(k["resources"])
    for res in listed:
        assert (K8S / res).is_file(), res
    # Everything else is applied by hand, on purpose.
    assert {p.name for p in k8s_files()} - listed - {"kustomization.yaml"} == {
        "secret.example.yaml",
        "rollback-job.yaml",
    }
    image_names = {i["name"] for i in k["images"]}
    for obj in by_kind("CronJob"):
        for ctr in pod_spec(obj)["containers"]:
            assert ctr["image"].split(":")[0] in image_names


def test_k8s_cronjobs() -> None:
    cronjobs = {c["metadata"]["name"]: c for c in by_kind("CronJob")}
    assert set(cronjobs) == {"vectune", "vectune-gpu"}
    for cj in cronjobs.values():
        spec = cj["spec"]
        Cron.parse(spec["schedule"])
        ZoneInfo(spec["timeZone"])
        assert spec["concurrencyPolicy"] == "Forbid"
        assert spec["startingDeadlineSeconds"] > 0
        job = spec["jobTemplate"]["spec"]
        assert job["backoffLimit"] >= 0
        pod = pod_spec(cj)
        assert pod["restartPolicy"] == "Never"
        (ctr,) = pod["containers"]
        assert ctr["args"] == ["run"] and ctr["args"][0] in CLI_COMMANDS
        res = ctr["resources"]
        assert {"cpu", "memory"} <= set(res["requests"]) and {"cpu", "memory"} <= set(res["limits"])
        # exit codes a retry cannot fix end the Job; 4 (Qdrant unavailable) and 0 are not among them
        codes = {
            c
            for rule in job["podFailurePolicy"]["rules"]
            if rule["action"] == "FailJob"
            for c in rule.get("onExitCodes", {}).get("values", [])
        }
        assert 4 not in codes and 0 not in codes and {3, 5, 6, 7} <= codes  # 7: the watch rolled back, no retry
    cpu, gpu = cronjobs["vectune"], cronjobs["vectune-gpu"]
    assert not cpu["spec"].get("suspend", False)
    assert gpu["spec"]["suspend"] is True, "only one variant may be active by default"
    gpod = pod_spec(gpu)
    assert str(gpod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]) == "1"
    assert gpod["nodeSelector"]
    assert any(t["key"] == "nvidia.com/gpu" for t in gpod["tolerations"])
    assert "nvidia.com/gpu" not in pod_spec(cpu)["containers"][0]["resources"]["limits"]


def test_k8s_references_resolve() -> None:
    names = {(o["kind"], o["metadata"].get("name")) for _, o in k8s_objects()}
    for obj in by_kind("CronJob") + by_kind("Job"):
        pod = pod_spec(obj)
        mounts: set[str] = set()
        for ctr in pod["containers"]:
            for src in ctr.get("envFrom", []):
                if "configMapRef" in src:
                    assert ("ConfigMap", src["configMapRef"]["name"]) in names
                if "secretRef" in src:
                    assert ("Secret", src["secretRef"]["name"]) in names
            mounts |= {m["mountPath"] for m in ctr.get("volumeMounts", [])}
        assert {"/data/models", "/data/work"} <= mounts
        for vol in pod["volumes"]:
            if "persistentVolumeClaim" in vol:
                assert ("PersistentVolumeClaim", vol["persistentVolumeClaim"]["claimName"]) in names


def test_k8s_rollback_job() -> None:
    (job,) = by_kind("Job")
    assert job["metadata"]["generateName"].startswith("vectune-rollback")
    (ctr,) = pod_spec(job)["containers"]
    assert ctr["args"][0] == "rollback" and ctr["args"][0] in CLI_COMMANDS
    assert ctr["args"][1:] == ["--alias", "$(ALIAS)"]
    assert any(e["name"] == "ALIAS" and e.get("value") for e in ctr["env"])


def test_k8s_secret_is_placeholder_only() -> None:
    (secret,) = by_kind("Secret")
    assert set(secret["stringData"]) == {"QDRANT_API_KEY", "OPENAI_API_KEY"}
    assert all(v in ("", "REPLACE_ME") for v in secret["stringData"].values())


# ----------------------------------------------------------------------------- README
def test_readme_explains_every_exit_code() -> None:
    codes = {0, 2} | {int(c) for c in re.findall(r"exit_code\s*=\s*(\d+)", ERRORS_PY.read_text())}
    readme = (DEPLOY / "README.md").read_text()
    for code in sorted(codes):
        assert re.search(rf"^\|\s*{code}\s*\|", readme, flags=re.M), f"exit code {code} missing from deploy/README.md"
    # Says how the image was run for real, and how to run that yourself.
    assert "deploy/smoke" in readme and "pytest -m container" in readme
    assert re.search(r"image size[^\n]*\d", readme, flags=re.I), "the README reports the image size"
