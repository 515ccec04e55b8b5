"""Answer scorers for long-context QA families: HotpotQA, RULER S-NIAH and OOLONG ``trec_coarse``.

This file is **self-contained** (standard library plus ``python-dateutil``, which the grading
image carries as Debian's ``python3-dateutil``): ``rollouts prepare`` copies it verbatim into
every generated task's ``tests/`` dir as ``qa_scorer.py``, and the task's verifier runs it in the
grading container as::

    python3 /tests/qa_scorer.py --gold /tests/gold.json --answer /workspace/answer.txt \\
        --out /logs/verifier/reward.json

which writes ``{"reward": <primary score>, <metric>: <number>, ...}`` (the reward contract of
:mod:`rollouts.grading.verifier`). It exits 0 once ``reward.json`` is written, also for a wrong or
missing answer (reward 0, ``answered`` = 0); a malformed ``gold.json`` (unknown family, an empty
RULER reference list) is the task's fault and exits non-zero (a verifier error).

The answer file is read as bytes and decoded as UTF-8 (undecodable bytes replaced), **without**
newline translation or stripping: the official scorers see the model's raw output, and so does
this one.

Sources (each function follows the named official definition; the code is ours; the parity tests
in ``tests/test_qa_parity.py`` run the official functions as oracles on several hundred
adversarial inputs per family):

- HotpotQA: ``hotpot_evaluate_v1.py`` of github.com/hotpotqa/hotpot (Yang et al., 2018):
  ``normalize_answer`` = lower-case → drop ``string.punctuation`` → replace the articles
  ``a|an|the`` by a space → collapse whitespace; EM = normalised strings equal; token F1 over the
  normalised whitespace tokens (bag of tokens), and F1 = precision = recall = 0 when either side
  normalises to ``yes``/``no``/``noanswer`` and the two differ. A missing prediction scores 0
  (the official ``eval`` skips it and divides by the number of gold answers).
- RULER: ``string_match_all`` of github.com/NVIDIA/RULER ``scripts/eval/synthetic/constants.py``
  (Hsieh et al., 2024): per sample, the fraction of reference strings that occur in the
  prediction, both lower-cased (RULER reports the mean ×100 rounded to 2 decimals; here the
  per-sample fraction in [0, 1]); the prediction is first cleaned like ``postprocess_pred`` of
  ``scripts/eval/evaluate.py`` (strip, control characters ``[\\x00-\\x1f]`` → newline, strip).
  An empty reference list divides by zero in the official code; here it raises ``ValueError``
  (a broken task, reported as a verifier error, never a score).
- OOLONG: ``synth_attempt_answer_parse`` / ``synth_process_response`` of
  github.com/abertsch72/oolong ``src/eval/eval_helpers.py`` (Bertsch et al., 2025), on the raw
  output: without a ``:`` the whole text when shorter than 20 characters, else its last
  whitespace-separated word; with a ``:`` the text after the last ``:``, stripped, with ``*``,
  ``[`` and ``]`` removed, and a candidate of 20+ characters containing ``more common`` /
  ``less common`` / ``same frequency`` reduced to that phrase. Score 1 when ``str(candidate) ==
  str(gold)`` (a DATE gold is a ``datetime``, so ``"2023-02-02 00:00:00"``); a reduced
  comparison phrase scores 1 when it is a substring of the gold; ``ANSWER_TYPE.NUMERIC``:
  ``0.75 ** |int(gold) - int(candidate)|`` (0 when ``int()`` fails); ``ANSWER_TYPE.DATE``:
  ``dateutil.parser.parse(candidate) == gold`` (0 when it does not parse); else 0.

Deliberate differences from the official code: none in the scores. Where the official code
*raises* instead of scoring, this one cannot copy it: (1) OOLONG, an answer of 20+ characters
with no ``:`` and nothing but whitespace (the official ``answer.split()[-1]`` raises
``IndexError`` and aborts the evaluation) scores 0 here; (2) RULER, an empty reference list
raises ``ValueError`` here (``ZeroDivisionError`` there).
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import string
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path

import dateutil.parser

# ----------------------------------------------------------------------------- HotpotQA

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = frozenset(string.punctuation)
_SPECIAL = ("yes", "no", "noanswer")


def normalize_answer(s: str) -> str:
    """HotpotQA/SQuAD normalisation: lower, drop punctuation, drop articles, collapse spaces."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def hotpot_em(prediction: str, gold: str) -> float:
    """Exact match (1.0/0.0) of the normalised strings."""
    return float(normalize_answer(prediction) == normalize_answer(gold))


def hotpot_f1(prediction: str, gold: str) -> tuple[float, float, float]:
    """Token-level (f1, precision, recall) after normalisation, HotpotQA's special cases included."""
    pred, ref = normalize_answer(prediction), normalize_answer(gold)
    if pred in _SPECIAL and pred != ref:
        return 0.0, 0.0, 0.0
    if ref in _SPECIAL and pred != ref:
        return 0.0, 0.0, 0.0
    pred_toks, ref_toks = pred.split(), ref.split()
    same = sum((Counter(pred_toks) & Counter(ref_toks)).values())
    if same == 0:
        return 0.0, 0.0, 0.0
    precision = same / len(pred_toks)
    recall = same / len(ref_toks)
    return 2 * precision * recall / (precision + recall), precision, recall


# ----------------------------------------------------------------------------- RULER

_CONTROL = re.compile(r"[\x00-\x1f]")


def ruler_postprocess(prediction: str) -> str:
    """RULER's ``postprocess_pred``: strip, control characters become newlines, strip again."""
    return _CONTROL.sub("\n", prediction.strip()).strip()


def string_match_all(prediction: str, references: list[str]) -> float:
    """Fraction in [0, 1] of ``references`` found (case-insensitive substring) in the cleaned
    ``prediction`` (RULER's per-sample ``string_match_all`` / 100). Raises ``ValueError`` for an
    empty reference list (the official code divides by zero)."""
    if not references:
        raise ValueError("RULER string_match_all: the reference list is empty (broken gold.json)")
    pred = ruler_postprocess(prediction).lower()
    return sum(1.0 if r.lower() in pred else 0.0 for r in references) / len(references)


# ----------------------------------------------------------------------------- OOLONG

COMPARISON_PHRASES = ("more common", "less common", "same frequency")
_CONFIDENT_TAGS = ("User:", "Answer:", "Date:", "Label")


def oolong_parse_answer(answer: str) -> tuple[str, str]:
    """(candidate answer, parse confidence low|med|high|vhigh) of the raw output, as OOLONG's
    ``synth_attempt_answer_parse`` (see the module docstring; an all-whitespace text of 20+
    characters without ``:`` gives ``""``, where the official code raises ``IndexError``)."""
    if ":" not in answer:
        if len(answer) < 20:
            return answer, "low"
        words = answer.split()
        return (words[-1] if words else ""), "low"
    cand = answer.split(":")[-1].strip()
    cand = cand.replace("*", "").replace("[", "").replace("]", "")
    conf = "high" if any(tag in answer for tag in _CONFIDENT_TAGS) else "med"
    if len(cand) < 20:
        return cand, "vhigh"
    for phrase in COMPARISON_PHRASES:
        if phrase in cand:
            return phrase, conf
    return cand, conf


def oolong_parse_gold(answer_field: str) -> str | int | datetime:
    """The gold value of an OOLONG-synth row's ``answer`` field (``"[12]"``, ``"['location']"``,
    ``"[datetime.date(2023, 2, 2)]"``), as ``synth_process_response`` parses it."""
    if "datetime" in answer_field:
        return datetime.strptime(answer_field, "[datetime.date(%Y, %m, %d)]")
    return ast.literal_eval(answer_field)[0]


def oolong_score(prediction: str, gold: str | int | datetime, answer_type: str) -> tuple[float, str, str]:
    """(score in [0, 1], parsed answer, parse confidence) of one raw OOLONG-synth output.

    ``answer_type`` is compared exactly, as in the official code: ``ANSWER_TYPE.NUMERIC``
    (partial credit ``0.75 ** |gold - pred|``), ``ANSWER_TYPE.DATE`` (``dateutil`` parse, then
    equality with the gold ``datetime``); anything else scores only by string equality or the
    comparison-phrase rule.
    """
    parsed, conf = oolong_parse_answer(prediction)
    if parsed == str(gold):
        return 1.0, parsed, conf
    if parsed in COMPARISON_PHRASES:
        return (1.0 if parsed in str(gold) else 0.0), parsed, conf
    if answer_type == "ANSWER_TYPE.NUMERIC":
        try:
            return float(0.75 ** abs(int(gold) - int(parsed))), parsed, conf
        except (TypeError, ValueError, OverflowError):  # int() refused, or the power overflowed
            return 0.0, parsed, "low"
    if answer_type == "ANSWER_TYPE.DATE":
        try:
            when = dateutil.parser.parse(parsed)
        except (ValueError, OverflowError):  # dateutil's ParserError is a ValueError
            return 0.0, parsed, "low"
        return float(when == gold), parsed, conf
    return 0.0, parsed, conf


# ----------------------------------------------------------------------------- grading entry


def score(gold: dict, prediction: str | None) -> dict[str, float]:
    """Named metrics for one answer; ``reward`` is the family's primary score.

    ``gold`` is a task's ``tests/gold.json``: ``{"family": "niah", "answers": [...]}``,
    ``{"family": "oolong", "answer": ..., "answer_type": "ANSWER_TYPE.…"}`` (a DATE gold is
    ``"YYYY-MM-DD"``) or ``{"family": "hotpotqa", "answer": "..."}``. ``prediction`` is the raw
    answer text; ``None`` = no answer file (every score 0). Raises ``ValueError`` for an unknown
    family or an empty RULER reference list.
    """
    family = gold["family"]
    answered = prediction is not None and prediction.strip() != ""
    out: dict[str, float] = {"answered": float(answered)}
    if family == "niah":
        s = string_match_all(prediction or "", list(gold["answers"])) * (prediction is not None)
        out.update(reward=s, string_match_all=s)
    elif family == "oolong":
        g = gold["answer"]
        if gold["answer_type"] == "ANSWER_TYPE.DATE":
            g = datetime.strptime(g, "%Y-%m-%d")
        s = 0.0 if prediction is None else oolong_score(prediction, g, gold["answer_type"])[0]
        out.update(reward=s, oolong_score=s, exact=float(s == 1.0))
    elif family == "hotpotqa":
        em = 0.0 if prediction is None else hotpot_em(prediction, gold["answer"])
        f1, p, r = (0.0, 0.0, 0.0) if prediction is None else hotpot_f1(prediction, gold["answer"])
        out.update(
            reward=f1 if gold.get("primary", "f1") == "f1" else em, em=em, f1=f1, precision=p, recall=r
        )
    else:
        raise ValueError(f"unknown family {family!r}")
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI used by the generated tasks' ``tests/test.sh`` (see the module docstring)."""
    ap = argparse.ArgumentParser(description="Score answer.txt against gold.json; write reward.json.")
    ap.add_argument("--gold", required=True)
    ap.add_argument("--answer", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    gold = json.loads(Path(args.gold).read_text(encoding="utf-8"))
    try:  # bytes, then decode: no newline translation, the scorer sees the raw output
        prediction = Path(args.answer).read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        prediction = None
    result = score(gold, prediction)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, sort_keys=True) + "\n", encoding="utf-8")
    shown = "<missing>" if prediction is None else repr(prediction.strip()[:200])
    print(f"answer: {shown}\nverifier: {json.dumps(result, sort_keys=True)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
