"""QA scorers against the official definitions, on hand-computed cases.

HotpotQA: ``hotpot_evaluate_v1.py`` (normalisation, EM, token F1 with the yes/no/noanswer rule).
RULER: ``string_match_all``. OOLONG: ``synth_attempt_answer_parse`` / ``synth_process_response``.
The expected numbers below were worked out by hand from those definitions.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from rollouts.grading import qa

# ----------------------------------------------------------------------------- HotpotQA


@pytest.mark.parametrize(
    ("raw", "norm"),
    [
        ("The  Eiffel Tower!", "eiffel tower"),
        ("An apple a day", "apple day"),
        ("theatre", "theatre"),  # articles only as whole words
        ("U.S.A.", "usa"),
        ("Rock-'n'-roll", "rocknroll"),
        ("A", ""),
        ("  Yes. ", "yes"),
    ],
)
def test_normalize_answer(raw, norm):
    assert qa.normalize_answer(raw) == norm


def test_hotpot_em():
    assert qa.hotpot_em("the Calloway Mountains.", "Calloway Mountains") == 1.0
    assert qa.hotpot_em("Calloway", "Calloway Mountains") == 0.0


def test_hotpot_f1_hand_computed():
    # pred tokens [calloway, mountains, range], gold [calloway, mountains]: same = 2
    # precision 2/3, recall 1, F1 = 2 * (2/3) / (5/3) = 0.8
    f1, p, r = qa.hotpot_f1("the Calloway Mountains range", "Calloway Mountains")
    assert (round(f1, 6), round(p, 6), r) == (0.8, round(2 / 3, 6), 1.0)
    # bag of tokens: a repeated token counts once per gold occurrence: pred [x, b, b], gold [b]
    f1, p, r = qa.hotpot_f1("x b b", "b")
    assert (round(p, 6), r) == (round(1 / 3, 6), 1.0) and f1 == pytest.approx(0.5)
    assert qa.hotpot_f1("nothing shared", "Calloway Mountains") == (0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("pred", "gold", "f1"),
    [
        ("yes", "no", 0.0),
        ("no", "no way", 0.0),  # prediction is special and differs from the gold
        ("yes it is", "yes", 0.0),  # gold is special and the prediction differs
        ("Yes.", "yes", 1.0),
        ("noanswer", "no answer", 0.0),
        ("no answer", "no answer", 1.0),
    ],
)
def test_hotpot_f1_yes_no_rule(pred, gold, f1):
    assert qa.hotpot_f1(pred, gold)[0] == f1


# ----------------------------------------------------------------------------- RULER


def test_string_match_all():
    assert qa.string_match_all("The special magic number is 1234567.", ["1234567"]) == 1.0
    assert qa.string_match_all("123456", ["1234567"]) == 0.0
    assert qa.string_match_all("ABC-def and 42", ["abc-DEF", "42", "7"]) == pytest.approx(2 / 3)
    assert qa.string_match_all("12\x0034\n", ["12\n34"]) == 1.0  # control chars become newlines
    with pytest.raises(ValueError, match="empty"):  # the official code divides by zero
        qa.string_match_all("anything", [])


# ----------------------------------------------------------------------------- OOLONG


def test_oolong_parse():
    assert qa.oolong_parse_answer("Answer: 12") == ("12", "vhigh")
    assert qa.oolong_parse_answer("location") == ("location", "low")  # no ':' and short: the whole text
    assert qa.oolong_parse_answer("I counted them all and the final number is 17") == ("17", "low")
    assert qa.oolong_parse_answer("Label: **[location]**") == ("location", "vhigh")
    long = "Answer: description and abstract concept is more common than numeric value"
    assert qa.oolong_parse_answer(long) == ("more common", "high")
    assert qa.oolong_parse_answer("so: abbreviation is the same frequency as entity") == (
        "same frequency",
        "med",
    )


@pytest.mark.parametrize(
    ("pred", "gold", "atype", "score"),
    [
        ("Answer: 12", 12, "ANSWER_TYPE.NUMERIC", 1.0),
        ("Answer: 10", 12, "ANSWER_TYPE.NUMERIC", 0.5625),  # 0.75 ** 2
        ("Answer: 15", 12, "ANSWER_TYPE.NUMERIC", 0.421875),  # 0.75 ** 3
        ("Answer: twelve", 12, "ANSWER_TYPE.NUMERIC", 0.0),
        ("Label: location", "location", "ANSWER_TYPE.LABEL", 1.0),
        ("Label: Location", "location", "ANSWER_TYPE.LABEL", 0.0),  # exact, case-sensitive
        ("Answer: entity is less common than location", "less common than", "ANSWER_TYPE.COMPARISON", 1.0),
        ("Answer: entity is more common than location", "less common than", "ANSWER_TYPE.COMPARISON", 0.0),
        ("Answer: less common than", "less common than", "ANSWER_TYPE.COMPARISON", 1.0),  # short: exact
        ("Answer: same frequency as", "same frequency as", "ANSWER_TYPE.COMPARISON", 1.0),
        ("User: 48213", "48213", "ANSWER_TYPE.USER", 1.0),
        ("Date: Feb 02, 2023", datetime(2023, 2, 2), "ANSWER_TYPE.DATE", 1.0),
        ("Date: 2023-02-03", datetime(2023, 2, 2), "ANSWER_TYPE.DATE", 0.0),
    ],
)
def test_oolong_score(pred, gold, atype, score):
    assert qa.oolong_score(pred, gold, atype)[0] == pytest.approx(score)


def test_oolong_gold_field():
    assert qa.oolong_parse_gold("[12]") == 12
    assert qa.oolong_parse_gold("['location']") == "location"
    assert qa.oolong_parse_gold("[datetime.date(2023, 2, 2)]") == datetime(2023, 2, 2)


# ----------------------------------------------------------------------------- grading entry


def test_score_dispatch_and_missing_answer():
    hp = {"family": "hotpotqa", "answer": "Calloway Mountains"}
    s = qa.score(hp, "the Calloway Mountains range")
    assert s["reward"] == pytest.approx(0.8) and s["em"] == 0.0 and s["answered"] == 1.0
    assert qa.score(hp, None) == {
        "answered": 0.0,
        "reward": 0.0,
        "em": 0.0,
        "f1": 0.0,
        "precision": 0.0,
        "recall": 0.0,
    }
    assert qa.score({"family": "niah", "answers": ["7654321"]}, "It is 7654321")["reward"] == 1.0
    oo = qa.score({"family": "oolong", "answer": 5, "answer_type": "ANSWER_TYPE.NUMERIC"}, "Answer: 4\n")
    assert oo["reward"] == 0.75 and oo["exact"] == 0.0
    d = qa.score(
        {"family": "oolong", "answer": "2023-02-02", "answer_type": "ANSWER_TYPE.DATE"}, "Date: Feb 02, 2023"
    )
    assert d["reward"] == 1.0


def test_scorer_cli_is_self_contained(tmp_path):
    """The file copied into tasks' tests/ runs with a bare interpreter (no rollouts import)."""
    src = Path(qa.__file__).read_text()
    assert "import rollouts" not in src and "from rollouts" not in src
    script = tmp_path / "qa_scorer.py"
    script.write_text(src)
    (tmp_path / "gold.json").write_text(json.dumps({"family": "hotpotqa", "answer": "yes"}))
    (tmp_path / "answer.txt").write_text("Yes.\n")
    out = tmp_path / "logs" / "reward.json"
    r = subprocess.run(
        [
            sys.executable,
            "-I",
            str(script),
            "--gold",
            str(tmp_path / "gold.json"),
            "--answer",
            str(tmp_path / "answer.txt"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["reward"] == 1.0
    r = subprocess.run(
        [
            sys.executable,
            "-I",
            str(script),
            "--gold",
            str(tmp_path / "gold.json"),
            "--answer",
            str(tmp_path / "missing.txt"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0 and json.loads(out.read_text())["answered"] == 0.0
