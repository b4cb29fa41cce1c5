"""`swe-srl images build`: plans from swebench's specs (no Docker), and a real-instance build + gold grading of two
small instances (requests, pytest) with Docker (~8 min from nothing: debootstrap, env, instance, grade)."""

from __future__ import annotations

import json
import socket
import subprocess

import pytest
from typer.testing import CliRunner

from environments.images import base as base_mod
from environments.images import plan as plan_mod
from environments.images.build import env_script, instance_script
from swe_srl.cli import app

SMALL = ("psf__requests-1724", "pytest-dev__pytest-5262")     # httpbin fake + CA; setuptools_scm


@pytest.fixture(scope="module")
def rows(shared_data):
    from swe_srl.swe_eval.dataset import read_local

    return {r["instance_id"]: r for r in read_local(shared_data / "swe_bench_verified" / "swe_bench_verified.jsonl")}


@pytest.fixture(scope="module")
def repos(shared_data):
    return shared_data / "repos"


def test_nearest_python_at_or_above():
    assert base_mod.nearest_python("3.6") == "3.9"
    assert base_mod.nearest_python("3.9") == "3.9"
    assert base_mod.nearest_python("3.10") == "3.11"
    assert base_mod.nearest_python("3.11") == "3.11"
    assert base_mod.nearest_python("3.12") == "3.13"
    assert base_mod.nearest_python("3.14") == "3.13"          # above every base: the newest, recorded
    assert base_mod.base_image_name("3.11") == "swe-srl/base:py3.11-bookworm"


def test_conda_names_to_pip():
    assert plan_mod._conda_to_pip("python=3.9 mpmath flake8 numpy=1.2 pip") == ["mpmath", "flake8", "numpy==1.2"]


def test_plan_follows_swebench_spec(rows, repos):
    from swebench.harness.constants import MAP_REPO_VERSION_TO_SPECS
    from swebench.harness.test_spec.test_spec import make_test_spec

    row = rows["pytest-dev__pytest-5262"]
    spec = MAP_REPO_VERSION_TO_SPECS[row["repo"]][row["version"]]
    p = plan_mod.plan_instance(row, repos)
    assert p.env.python == "3.9" and p.env.spec_python == spec["python"]
    assert p.env.pip_packages == spec["pip_packages"] and p.install == spec["install"]
    assert p.image == make_test_spec(row).instance_image_key == "sweb.eval.x86_64.pytest-dev__pytest-5262:latest"
    assert any("setuptools" in r for r in p.build_requires)          # pyproject build-system at base_commit
    script = instance_script(p)
    assert spec["install"] in script and "git commit --allow-empty -am SWE-bench" in script
    assert all(pkg in env_script(p.env) for pkg in spec["pip_packages"])


def test_django_env_reads_requirements_from_repo_and_records_deviations(rows, repos, shared_data):
    ids = json.loads((repos / "instances.json").read_text())["django/django"]
    django = [rows[i] for i in ids]
    commits = plan_mod.env_commits(django)
    by_version: dict[str, set[str]] = {}
    for r in django:
        p = plan_mod.plan_instance(r, repos, env_commit=commits[(r["repo"], r["version"])])
        by_version.setdefault(r["version"], set()).add(p.env.image)
        if r["version"] == "3.0":
            assert p.env.python == "3.9" and p.env.spec_python == "3.6"
            assert p.env.py36_short_description
            assert any("python 3.9 instead of 3.6" in d for d in p.env.deviations)
        if r["version"] == "5.0":
            assert p.env.python == "3.11" and not p.env.py36_short_description
        assert "asgiref" in p.env.requirements or "pytz" in p.env.requirements
    assert all(len(v) == 1 for v in by_version.values()), by_version      # one env image per repo+version


def test_make_test_spec_offline_with_repo_requirements(rows, repos):
    """swebench fetches django's requirements from GitHub; with the repos given it reads them from the repo."""
    from swebench.harness.test_spec.test_spec import make_test_spec

    plan_mod.use_repo_requirements(repos)
    row = rows["django__django-13344"]
    spec = make_test_spec(row)
    assert "python -m pip install -r" in spec.setup_env_script and "tblib" in spec.setup_env_script
    assert "./tests/runtests.py" in spec.eval_script


def test_cli_errors_are_one_line(tmp_path):
    r = CliRunner().invoke(app, ["images", "build", "--dataset", str(tmp_path / "none.jsonl")])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "no such file" in r.output
    r = CliRunner().invoke(app, ["images", "build", "--repos", str(tmp_path / "nope"),
                                 "--dataset", str(tmp_path / "none.jsonl")])
    assert r.exit_code == 2 and "not a directory" in r.output


def test_instances_option_reads_instances_json(repos):
    from swe_srl.commands.images import instance_ids

    ids = instance_ids(str(repos / "instances.json"))
    assert len(ids) == 77 and "psf__requests-1724" in ids
    assert instance_ids("a, b") == ["a", "b"]


# --- real instances, Docker ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def built(docker_client, rows, repos, tmp_path_factory):
    from environments.images import build_images

    missing_base = not base_mod.image_exists(docker_client, base_mod.base_image_name("3.9"))
    if missing_base and subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip() != "0":
        pytest.skip("building the Debian base needs root (debootstrap)")
    try:
        socket.create_connection(("pypi.org", 443), 10).close()
    except OSError:
        pytest.skip("the package index is unreachable")
    logs = tmp_path_factory.mktemp("image-logs")
    recs = build_images([rows[i] for i in SMALL], repos_dir=repos, workers=2, logs_dir=logs)
    return {r["instance_id"]: r for r in recs}, logs


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_build_and_grade_real_instances(built, docker_client, rows, repos, tmp_path):
    from environments.images import eval_sandbox_factory
    from swe_srl.swe_eval.grading import grade_in_sandbox

    recs, logs = built
    assert {r["status"] for r in recs.values()} <= {"built", "cached"}, recs
    for iid, rec in recs.items():
        img = docker_client.images.get(rec["image"])
        assert img.labels["swe-srl.instance_id"] == iid and img.labels["swe-srl.layer"] == "instance"
        assert json.loads(img.labels["swe-srl.deviations"]) == rec["deviations"]
    assert (logs / "builds.jsonl").read_text().count("\n") >= len(SMALL)
    plan_mod.use_repo_requirements(repos)
    factory = eval_sandbox_factory(docker_client)
    for iid in SMALL:
        gold = grade_in_sandbox(rows[iid], rows[iid]["patch"], factory, log_dir=tmp_path, timeout=900)
        assert gold.status == "resolved", (iid, gold.reason, (tmp_path / iid / "test_output.txt").read_text()[-3000:])
        empty_fix = grade_in_sandbox(rows[iid], "diff --git a/x b/x\n", factory, log_dir=tmp_path / "bad")
        assert empty_fix.status == "unresolved"                   # a patch that does not apply is not resolved


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_eval_sandbox_reaches_nothing_but_its_fakes(built, docker_client, rows):
    from environments.images import eval_sandbox_factory

    factory = eval_sandbox_factory(docker_client)
    with factory(rows["psf__requests-1724"]) as sb:
        probe = r'''source /opt/miniconda3/bin/activate && conda activate testbed && python - <<'EOF'
import socket, time, urllib.request
t = time.time()
try:
    socket.create_connection(("10.255.255.1", 80), 2); print("PRIVATE REACHED")
except socket.timeout:
    print("private: timeout after %.1fs" % (time.time() - t))
except OSError as e:
    print("private: error", e)
try:
    socket.create_connection(("1.1.1.1", 443), 2); print("PUBLIC REACHED")
except OSError as e:
    print("public: blocked", type(e).__name__)
print("httpbin.org ->", socket.gethostbyname("httpbin.org"))
print("fake:", urllib.request.urlopen("http://httpbin.org/get", timeout=10).status)
EOF'''
        out = sb.run(probe, timeout=120).output
    assert "private: timeout" in out and "REACHED" not in out, out
    assert "public: blocked" in out and "httpbin.org -> 127.0.0.1" in out and "fake: 200" in out, out


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_images_ls_and_rm_only_touch_built_images(built, docker_client):
    r = CliRunner().invoke(app, ["images", "ls", "--json", "--layer", "instance"])
    assert r.exit_code == 0, r.output
    listed = {json.loads(x)["instance_id"]: json.loads(x) for x in r.output.splitlines() if x.strip()}
    for iid in SMALL:
        assert listed[iid]["layer"] == "instance" and listed[iid]["python"] == "3.9" and listed[iid]["deviations"]
    foreign = next((t for img in docker_client.images.list() if "swe-srl.layer" not in (img.labels or {})
                    for t in img.tags), None)
    if foreign is not None:                  # an image the builder did not make is never removed
        r = CliRunner().invoke(app, ["images", "rm", foreign])
        assert r.exit_code == 2 and "not built by swe-srl images build" in r.output
        docker_client.images.get(foreign)
    r = CliRunner().invoke(app, ["images", "rm", "swe-srl-test/absent:x"])
    assert r.exit_code == 0 and "removed 0 image(s)" in r.output
