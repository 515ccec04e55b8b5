"""Task formats (rollouts/formats): Harbor task.toml and Terminal-Bench 1 task.yaml read into the
same Task as tb_meta.json; keys mapped, refused (unsupported, named) or rejected; tasks show and
convert through the real CLI. No Docker here (tests/test_formats_docker.py runs the fixtures)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rollouts.errors import ConfigError
from rollouts.formats import REGISTRY, detect_format, formats
from rollouts.formats.envtemplate import expand_env
from rollouts.formats.harbor import FORMAT as HARBOR
from rollouts.formats.harbor import REFUSED, parse_size_mb
from rollouts.task import load_task
from tests.conftest import ROOT

FIX = ROOT / "tests" / "fixtures"
HARBOR_OK = sorted((FIX / "harbor").iterdir())
HARBOR_BAD = sorted((FIX / "harbor-unsupported").iterdir())
TB_OK = sorted((FIX / "terminal_bench").iterdir())
TB_BAD = sorted((FIX / "terminal_bench-unsupported").iterdir())


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def test_registry_has_one_entry_per_format():
    assert list(formats()) == ["tb_meta", "harbor", "terminal_bench"]
    for name, fmt in formats().items():  # the lazy registry's marker/module line agrees with the module
        assert (fmt.name, fmt.marker) == (name, REGISTRY[name][0])
    assert detect_format(HARBOR_OK[0]).name == "harbor"
    assert detect_format(TB_OK[0]).name == "terminal_bench"
    assert detect_format(ROOT / "data/tasks/prepared/shell_hello_file").name == "tb_meta"


def test_not_a_task_dir_names_the_markers(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_task(tmp_path)
    assert "tb_meta.json" in str(e.value) and "task.toml" in str(e.value) and "task.yaml" in str(e.value)


@pytest.mark.parametrize("d", HARBOR_OK + TB_OK, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_supported_fixtures_load(d):
    t = load_task(d)
    assert t.supported, t.unsupported
    assert t.meta.environment.state == "image" and t.meta.environment.logs_dirs
    assert t.meta.tests.command == "bash /tests/test.sh" and t.meta.tests.exit_code == "ignored"
    assert (t.dir / "tests" / "test.sh").is_file() and (t.dir / t.meta.solution).is_file()
    assert len(t.digest) == 64


@pytest.mark.parametrize("d", HARBOR_BAD + TB_BAD, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_unsupported_fixtures_name_the_key(d):
    t = load_task(d)
    assert not t.supported
    key = {"gpu": "environment.gpus", "allowlist": "allowlist", "multi-step": "steps", "windows": "environment.os",
           "mcp": "environment.mcp_servers", "multi-service": "2 services", "custom-volume": "volumes"}[d.name]
    assert any(key in r for r in t.unsupported), t.unsupported


def test_harbor_mapping_of_app_state():
    t = load_task(FIX / "harbor/app-state")
    m = t.meta
    assert t.name == "fixtures/app-state" and t.format == "harbor"
    assert m.environment.dockerfile == "environment/Dockerfile" and m.environment.dockerfile_from == "as_written"
    assert m.environment.workdir == "/app"  # from the Dockerfile's WORKDIR
    assert m.environment.build_timeout_sec == 300
    assert (m.timeouts.agent_sec, m.timeouts.verifier_sec) == (120, 60)
    assert (m.resources.cpus, m.resources.memory_mb) == (1, 1024)
    assert m.network is False and m.tests.network is False
    assert (m.tests.mode, m.tests.stop) == ("shared", "agent")
    assert m.metadata["difficulty"] == "easy" and m.metadata["harbor"]["keywords"] == ["fixture"]


def test_harbor_deprecated_keys_mapped_as_harbor_does():
    t = load_task(FIX / "harbor/metrics")
    assert t.meta.resources.memory_mb == 1024 and t.meta.resources.storage_mb == 2048
    assert t.meta.network is False  # allow_internet = false → no-network
    assert t.meta.metadata["schema_version"] == "1.0"  # version → schema_version
    assert any("version → schema_version" in n for n in t.notes)
    assert any("storage_mb" in n and "not enforced" in n for n in t.notes)


def test_separate_mode_is_fresh_grading_and_prebuilt_image_falls_back_to_the_dockerfile():
    t = load_task(FIX / "harbor/separate")
    assert t.meta.tests.mode == "fresh"
    env = t.meta.environment
    assert env.image == "registry.example.invalid/fixtures/separate:1" and env.dockerfile == "environment/Dockerfile"
    assert any("else environment/Dockerfile is built" in n for n in t.notes)


def test_env_expansion_from_the_host(monkeypatch):
    t = load_task(FIX / "harbor/solution-env")
    assert t.meta.solution_env == {"WORD": "platypus"} and t.meta.tests.env == {"EXPECTED_WORD": "platypus"}
    assert t.meta.environment.env == {"APP_MODE": "fixture"}
    monkeypatch.setenv("HB_FIXTURE_WORD", "echidna")
    assert load_task(FIX / "harbor/solution-env").meta.solution_env == {"WORD": "echidna"}
    problems: list[str] = []
    assert expand_env({"A": "x${NOPE_NOT_SET}y", "B": "${NOPE_NOT_SET:-d}", "C": 3}, "verifier.env", {}, problems) \
        == {"A": "x${NOPE_NOT_SET}y", "B": "d", "C": "3"}
    assert problems == ["verifier.env.A: ${NOPE_NOT_SET} is not set on this host and has no default"]


def test_unset_variable_without_default_makes_the_task_unsupported(tmp_path):
    d = tmp_path / "t"
    shutil.copytree(FIX / "harbor/app-state", d)
    extra = '\n[solution]\nenv = { KEY = "${ROLLOUTS_TEST_UNSET_VAR}" }\n'
    (d / "task.toml").write_text((d / "task.toml").read_text() + extra)
    t = load_task(d)
    assert not t.supported and "solution.env.KEY: ${ROLLOUTS_TEST_UNSET_VAR} is not set" in t.unsupported[0]


@pytest.mark.parametrize("extra, key", [
    ("[agent]\nuser = 'agent'\n", "agent.user"),
    ("[verifier]\nuser = 1000\n", "verifier.user"),
    ("[environment]\ntpu = { type = 'v6e', topology = '2x2' }\n", "environment.tpu"),
    ("[environment]\nskills_dir = '/skills'\n", "environment.skills_dir"),
    ("[verifier]\nenvironment = { docker_image = 'x' }\n", "verifier.environment"),
    ("[environment]\nfancy = 1\n", "environment.fancy: unknown key"),
    ("surprise = true\n", "surprise: unknown key"),
    ("[agent]\nnetwork_mode = 'no-network'\n[verifier]\nnetwork_mode = 'public'\n", "verifier.network_mode"),
])
def test_refused_keys_are_named(tmp_path, extra, key):
    d = tmp_path / "t"
    d.mkdir()
    (d / "task.toml").write_text(extra)
    (d / "instruction.md").write_text("x\n")
    (d / "environment").mkdir()
    (d / "environment/Dockerfile").write_text("FROM ubuntu:24.04\n")
    (d / "tests").mkdir()
    (d / "tests/test.sh").write_text("true\n")
    t = load_task(d)
    assert any(key in r for r in t.unsupported), t.unsupported
    assert "environment/docker-compose.yaml" in REFUSED  # the refusal table names every refused key


def test_bad_values_are_config_errors_naming_task_toml(tmp_path):
    d = tmp_path / "t"
    shutil.copytree(FIX / "harbor/app-state", d)
    (d / "task.toml").write_text("[environment]\nmemory = '2X'\n")
    with pytest.raises(ConfigError) as e:
        load_task(d)
    assert "task.toml: environment" in str(e.value) and "memory: invalid size '2X'" in str(e.value)
    (d / "task.toml").write_text("[environment]\ncpus = 'two'\n")
    with pytest.raises(ConfigError, match=r"task.toml: environment.cpus"):
        load_task(d)
    (d / "task.toml").write_text("[task]\nname = 'no-namespace'\n")
    with pytest.raises(ConfigError, match=r"task.toml: task.name"):
        load_task(d)
    (d / "task.toml").write_text("[agent\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_task(d)
    (d / "task.toml").write_text("")
    (d / "tests/test.sh").unlink()
    with pytest.raises(ConfigError, match="tests/test.sh"):
        load_task(d)


def test_parse_size_like_harbor():
    assert (parse_size_mb("2G", "m"), parse_size_mb("512M", "m"), parse_size_mb("2048k", "m")) == (2048, 512, 2)
    with pytest.raises(ValueError):
        parse_size_mb("lots", "m")


def test_terminal_bench_mapping():
    t = load_task(FIX / "terminal_bench/compose-env")
    assert t.format == "terminal_bench" and t.name == "compose-env" and t.origin == FIX / "terminal_bench/compose-env"
    assert t.meta.environment.env == {"GREETING": "bonjour"}  # TEST_DIR dropped as Harbor's migrate does
    assert (t.meta.timeouts.agent_sec, t.meta.timeouts.verifier_sec) == (120, 60)
    assert t.meta.metadata["category"] == "file-operations"
    # the view: run-tests.sh and the generated test.sh under tests/, solution.sh as solution/solve.sh
    assert (t.dir / "tests/run-tests.sh").read_bytes() == (t.origin / "run-tests.sh").read_bytes()
    assert "ROLLOUTS_TB_PARSER" in (t.dir / "tests/test.sh").read_text()
    assert (t.dir / "solution/solve.sh").read_bytes() == (t.origin / "solution.sh").read_bytes()
    assert t.instruction.startswith("Write the value of the environment variable GREETING")
    assert load_task(FIX / "terminal_bench/working-dir").meta.environment.workdir == "/srv/work"
    assert load_task(FIX / "terminal_bench/hello-file").meta.environment.workdir == "/app"


def test_solution_yaml_becomes_a_script():
    t = load_task(FIX / "terminal_bench/solution-yaml")
    text = (t.dir / "solution/solve.sh").read_text()
    assert "mkdir -p /app/out" in text and text.index("mkdir") < text.index("echo done")


def test_tasks_show_and_convert_through_the_cli(run_cli, tmp_path):
    p = run_cli("tasks", "show", str(FIX / "harbor/metrics"))
    assert p.returncode == 0, p.stderr
    for s in ("format         harbor", "memory = '1G' → memory_mb = 1024", "grading", "supported      yes"):
        assert s in p.stdout
    p = run_cli("tasks", "show", str(FIX / "harbor-unsupported/gpu"))
    assert "unsupported    environment.gpus = 1" in p.stdout
    out = tmp_path / "converted"
    p = run_cli("tasks", "convert", str(FIX / "terminal_bench/compose-env"), "-o", str(out))
    assert p.returncode == 0, p.stderr
    meta = json.loads((out / "tb_meta.json").read_text())
    assert meta["environment"]["env"] == {"GREETING": "bonjour"} and meta["tests"]["stop"] == "agent"
    t = load_task(out)
    assert t.format == "tb_meta" and t.supported and (out / "tests/run-tests.sh").is_file()
    p = run_cli("tasks", "convert", str(FIX / "harbor-unsupported/gpu"), "-o", str(tmp_path / "x"))
    assert p.returncode == 2 and "unsupported" in p.stderr


def test_harbor_loader_is_the_registered_one():
    assert formats()["harbor"] is HARBOR and HARBOR.marker == "task.toml"
    assert Path(HARBOR_OK[0] / "task.toml").is_file()


def test_verifier_error_says_the_verifier_needed_the_network(tmp_path):
    from rollouts.task_runtime import explain_verifier_error

    t = load_task(FIX / "harbor/metrics")  # no-network task
    (tmp_path / "logs").mkdir()
    log = tmp_path / "logs" / "eval.log"
    log.write_text("$ bash /tests/test.sh\ncurl: (6) Could not resolve host: astral.sh\n(exit 6)\n")
    msg = explain_verifier_error(t, tmp_path, "the verifier wrote no reward file")
    assert msg.startswith("the verifier needed the network (it ran without network access: "
                          "'curl: (6) Could not resolve host: astral.sh')")
    assert msg.endswith("the verifier wrote no reward file")
    log.write_text("AssertionError: wrong answer\n")
    assert explain_verifier_error(t, tmp_path, "x") == "x"


def test_templates_never_written_out_resolved(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("HB_FIXTURE_WORD", "sk-secret-value-123")
    t = load_task(FIX / "harbor/solution-env")
    assert t.meta.solution_env == {"WORD": "sk-secret-value-123"}  # resolved for the run
    assert t.env_templates == {"tests.env": {"EXPECTED_WORD": "${HB_FIXTURE_WORD:-platypus}"},
                               "solution_env": {"WORD": "${HB_FIXTURE_WORD:-platypus}"}}
    out = tmp_path / "conv"
    p = run_cli("tasks", "convert", str(FIX / "harbor/solution-env"), "-o", str(out))
    assert p.returncode == 0, p.stderr
    text = (out / "tb_meta.json").read_text()
    assert "sk-secret-value-123" not in text and '"WORD": "${HB_FIXTURE_WORD:-platypus}"' in text
    p = run_cli("tasks", "show", "--json", str(FIX / "harbor/solution-env"))
    assert "sk-secret-value-123" not in p.stdout and "${HB_FIXTURE_WORD:-platypus}" in p.stdout
    assert load_task(out).meta.solution_env == {"WORD": "sk-secret-value-123"}  # tb_meta expands too


def test_from_images_mapping_and_rewrite():
    from rollouts.image_build import rewrite_from
    from rollouts.image_map import base_images_of, from_images, mapped_image

    df = ("ARG V=1\nFROM --platform=linux/amd64 python:3.13-slim AS build\nRUN true\n"
          "FROM build AS test\nFROM ubuntu:24.04\nFROM ${BASE}\nFROM scratch\n")
    assert from_images(df) == ["python:3.13-slim", "ubuntu:24.04"]  # no stage names, ARGs or scratch
    m = {"python:3.13-slim": "rollouts-base", "ubuntu": "local/ubuntu:1"}
    assert mapped_image("python:3.13-slim", m) == "rollouts-base"
    assert mapped_image("ubuntu:24.04", m) == "local/ubuntu:1"  # a key without a tag maps every tag
    assert mapped_image("debian:12", m) == "debian:12"
    out = rewrite_from(df, {"python:3.13-slim": "rollouts-base:abc", "ubuntu:24.04": "local/ubuntu:1"})
    assert "FROM --platform=linux/amd64 rollouts-base:abc AS build" in out and "FROM local/ubuntu:1\n" in out
    assert "FROM build AS test" in out and "FROM ${BASE}" in out
    assert base_images_of(load_task(FIX / "harbor/app-state")) == ["ubuntu:24.04"]
    assert base_images_of(load_task(FIX / "terminal_bench/hello-file")) == [
        "ghcr.io/laude-institute/t-bench/python-3-13:20250620"]
    assert base_images_of(load_task(ROOT / "data/tasks/prepared/fix_bug_stats")) == []
