"""OOLONG ``trec_coarse``-style aggregation tasks: from the official data, or generated offline.

OOLONG-synth (Bertsch et al., 2025) context windows are lines ``Date: Mon DD, YYYY || User: N ||
Instance: <question>`` whose (hidden) TREC-coarse labels are one of six: abbreviation, entity,
description and abstract concept, human being, location, numeric value. The questions ask for
aggregate label statistics: counts, the most/least frequent label, comparisons between two labels,
per-user and per-month questions. Scoring: :func:`rollouts.grading.qa.oolong_score` (official
rules on the raw output: answer after the last ':', numeric ``0.75 ** |gold - pred|``, comparison
phrases, dates parsed by dateutil, exact match otherwise).

- ``--file F``: rows of the official ``oolongbench/oolong-synth`` data exported to JSON Lines or
  a JSON list (fields ``id``, ``dataset``, ``context_window_text``, ``question``, ``answer``,
  ``answer_type``; ``context_len`` optional), filtered to ``dataset == trec_coarse``.
- no file: a generator with labelled instances. The instances are written for this project from
  templates per label (TREC-coarse definitions: ABBR, ENTY, DESC, HUM, LOC, NUM), not TREC's
  questions; the questions follow OOLONG's wording and answer formats. Gold answers are computed
  from the labels, ties are avoided for most/least/argmax questions.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

from rollouts.errors import ConfigError
from rollouts.families import QATask, token_counter
from rollouts.grading.qa import oolong_parse_gold

LABELS = [
    "numeric value",
    "entity",
    "location",
    "description and abstract concept",
    "abbreviation",
    "human being",
]
PREAMBLE = (
    "The context (the data above) holds general-knowledge questions, one per line, each with a date and "
    "a user ID (a user may appear on many lines). Each question can be labelled as one of 6 categories: "
    + ", ".join(f"'{x}'" for x in LABELS)
    + ". The labels are not given: work out the label of each "
    "question from its meaning. You will be asked about aggregate label statistics across all lines. "
    "Do not guess, estimate or approximate the result. Answer the following: "
)
_F = {
    "acr": "NASA UNESCO NATO DNA RAM CPU GDP FBI UFO AIDS laser radar scuba SCUBA OPEC BBC UNICEF HTML "
    "PIN ATM WHO".split(),
    "thing": "the telephone|the printing press|the light bulb|the bicycle|the zipper|the microwave oven|"
    "the steam engine|the compass|the telescope|the parachute".split("|"),
    "book": "War and Peace|Moby Dick|Don Quixote|Pride and Prejudice|The Odyssey|Hamlet|Frankenstein|"
    "Dracula|Ulysses|The Divine Comedy".split("|"),
    "place": "the Eiffel Tower|Machu Picchu|the Taj Mahal|Mount Kilimanjaro|the Great Barrier Reef|"
    "Angkor Wat|Lake Titicaca|the Alhambra|Stonehenge|the Acropolis".split("|"),
    "country": "Peru|Kenya|Norway|Vietnam|Chile|Portugal|Nepal|Ghana|Iceland|Bolivia".split("|"),
    "concept": "inflation|photosynthesis|a black hole|democracy|osmosis|an allergy|irony|gravity|"
    "a sonnet|entropy".split("|"),
    "animal": "a giraffe|an octopus|a hummingbird|a camel|a penguin|a bat|a shark|a beaver|an owl|"
    "a tortoise".split("|"),
    "unit": "feet in a mile|days in a leap year|bones in the human body|keys on a piano|players on a "
    "rugby team|teaspoons in a tablespoon|sides on a dodecagon|minutes in a day|ounces in a "
    "pound|strings on a violin".split("|"),
}
TEMPLATES: dict[str, list[str]] = {
    "abbreviation": [
        "What does {acr} stand for ?",
        "What is the full form of {acr} ?",
        "What is {acr} an abbreviation of ?",
        "What do the letters {acr} mean ?",
    ],
    "entity": [
        "What material is {thing} mostly made of ?",
        "What do you call a baby {animal_bare} ?",
        "What instrument did the composer of {book} play ?",
        "What is the national flower of {country} ?",
        "What food does {animal} eat ?",
        "What currency is used in {country} ?",
    ],
    "description and abstract concept": [
        "What is {concept} ?",
        "How does {thing} work ?",
        "Why does {animal} sleep so much ?",
        "What is the meaning of {concept} ?",
        "How do you explain {concept} to a child ?",
    ],
    "human being": [
        "Who invented {thing} ?",
        "Who wrote {book} ?",
        "Who was the first president of {country} ?",
        "Who designed {place} ?",
        "Who first described {concept} ?",
    ],
    "location": [
        "Where is {place} located ?",
        "What is the capital of {country} ?",
        "Where does {animal} live in the wild ?",
        "In which city was {book} written ?",
        "What country borders {country} to the north ?",
    ],
    "numeric value": [
        "How many {unit} are there ?",
        "When was {thing} invented ?",
        "How tall is {place} ?",
        "How long does {animal} live ?",
        "What year was {book} published ?",
        "How many people live in {country} ?",
    ],
}
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
QTYPES = ["count", "most", "least", "compare", "user_count", "user_most", "month_most"]
_FMT_NUM = " Give your final answer in the form 'Answer: number'."
_FMT_LABEL = (
    " Give your final answer in the form 'Label: answer' where answer is one of the labels: "
    + ", ".join(LABELS)
    + "."
)


def _instance(rng: random.Random, label: str) -> str:
    t = rng.choice(TEMPLATES[label])
    fill = {k: rng.choice(v) for k, v in _F.items()}
    fill["animal_bare"] = fill["animal"].split(" ", 1)[1]
    return t.format(**fill)


def _window(rng: random.Random, length: int) -> tuple[str, list[dict]]:
    """Lines of about ``length`` tokens and their records (date, user, label)."""
    count = token_counter().count
    users = sorted(rng.sample(range(10000, 99999), 8))
    weights = [rng.uniform(0.5, 2.0) for _ in LABELS]
    start = date(2022, 1, 1)
    lines: list[str] = []
    recs: list[dict] = []
    used = 0
    while True:
        label = rng.choices(LABELS, weights)[0]
        d = start + timedelta(days=rng.randrange(730))
        user = rng.choice(users)
        line = f"Date: {d.strftime('%b %d, %Y')} || User: {user} || Instance: {_instance(rng, label)}"
        used += count(line) + 1
        if used > length and lines:
            break
        lines.append(line)
        recs.append({"date": d, "user": user, "label": label})
    return "\n".join(lines), recs


def _unique_extreme(counter: Counter, keys: list, most: bool):
    """The key with the strictly highest (lowest) count among ``keys``, or None on a tie."""
    ranked = sorted(keys, key=lambda k: counter[k], reverse=most)
    if len(ranked) > 1 and counter[ranked[0]] == counter[ranked[1]]:
        return None
    return ranked[0]


def _question(rng: random.Random, qtype: str, recs: list[dict]) -> tuple[str, str, str] | None:
    """(question, gold answer value, answer_type) or None when this qtype would be ambiguous."""
    c = Counter(r["label"] for r in recs)
    if qtype == "count":
        lab = rng.choice(LABELS)
        return (
            f"In the above data, how many data points should be classified as label '{lab}'?" + _FMT_NUM,
            str(c[lab]),
            "ANSWER_TYPE.NUMERIC",
        )
    if qtype in ("most", "least"):
        lab = _unique_extreme(c, LABELS, qtype == "most")
        word = "most" if qtype == "most" else "least"
        return lab and (
            f"In the above data, which of the labels is the {word} common?" + _FMT_LABEL,
            lab,
            "ANSWER_TYPE.LABEL",
        )
    if qtype == "compare":
        a, b = rng.sample(LABELS, 2)
        rel = (
            "more common than" if c[a] > c[b] else "less common than" if c[a] < c[b] else "same frequency as"
        )
        return (
            f"In the above data, is label '{a}' more common, less common, or the same frequency as label "
            f"'{b}'? Give your final answer in the form 'Answer: {a} is [X] {b}', where [X] is 'more "
            "common than', 'less common than', or 'same frequency as'.",
            rel,
            "ANSWER_TYPE.COMPARISON",
        )
    if qtype == "user_count":
        user = rng.choice(sorted({r["user"] for r in recs}))
        lab = rng.choice(LABELS)
        n = sum(r["user"] == user and r["label"] == lab for r in recs)
        return (
            f"For the following question, only consider the subset of instances that are associated with "
            f"user IDs {user}. Among instances associated with these users, how many data points should be "
            f"classified as label '{lab}'?" + _FMT_NUM,
            str(n),
            "ANSWER_TYPE.NUMERIC",
        )
    if qtype == "user_most":
        lab = rng.choice(LABELS)
        per_user = Counter(r["user"] for r in recs if r["label"] == lab)
        user = _unique_extreme(per_user, sorted({r["user"] for r in recs}), True)
        return user and (
            f"In the above data, which user has the most instances with the label '{lab}'? Give "
            "your final answer in the form 'User: user ID'.",
            str(user),
            "ANSWER_TYPE.USER",
        )
    month = rng.choice(sorted({r["date"].month for r in recs}))
    sub = Counter(r["label"] for r in recs if r["date"].month == month)
    lab = _unique_extreme(sub, LABELS, True)
    return lab and (
        f"For the following question, only consider the subset of instances that occur in "
        f"{MONTHS[month - 1]} of any year. Among instances occurring in {MONTHS[month - 1]}, which "
        "of the labels is the most common?" + _FMT_LABEL,
        lab,
        "ANSWER_TYPE.LABEL",
    )


def _gold_text(answer: str, answer_type: str) -> str:
    prefix = {"ANSWER_TYPE.LABEL": "Label", "ANSWER_TYPE.USER": "User", "ANSWER_TYPE.DATE": "Date"}.get(
        answer_type, "Answer"
    )
    return f"{prefix}: {answer}"


def _task(name: str, context: str, question: str, answer, answer_type: str, meta: dict) -> QATask:
    gold_val = answer.strftime("%Y-%m-%d") if hasattr(answer, "strftime") else answer
    if answer_type.endswith("NUMERIC"):
        gold_val = int(gold_val)
    return QATask(
        name=name,
        family="oolong",
        description=f"OOLONG trec_coarse-style aggregation ({answer_type.split('.')[-1].lower()} answer)",
        question=question,
        prompt_template="{context}\n\n" + question,
        context=context,
        gold={"family": "oolong", "answer": gold_val, "answer_type": answer_type},
        gold_text=_gold_text(str(gold_val), answer_type),
        metadata=meta,
    )


def generate(n: int, length: int, seed: int) -> list[QATask]:
    """``n`` generated tasks, each its own context window of about ``length`` tokens."""
    if length < 128:
        raise ValueError("length must be at least 128 tokens")
    rng = random.Random(seed)
    tasks: list[QATask] = []
    i = 0
    while len(tasks) < n:
        context, recs = _window(rng, length)
        qtype = QTYPES[i % len(QTYPES)]
        q = _question(rng, qtype, recs)
        i += 1
        if q is None:
            continue
        question, answer, atype = q
        meta = {
            "generator": {"family": "oolong", "n": n, "length": length, "seed": seed, "index": len(tasks)},
            "source": "generated",
            "dataset": "trec_coarse",
            "question_type": qtype,
            "lines": len(recs),
            "label_counts": dict(sorted(Counter(r["label"] for r in recs).items())),
        }
        tasks.append(
            _task(
                f"oolong-{length}-s{seed}-{len(tasks):03d}", context, PREAMBLE + question, answer, atype, meta
            )
        )
    return tasks


def _rows(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
        rows = data if isinstance(data, list) else data.get("rows", data.get("data"))
    except json.JSONDecodeError:
        rows = [json.loads(ln) for ln in text.splitlines() if ln.strip()]
    if not isinstance(rows, list):
        raise ConfigError("expected a JSON list or JSON Lines of OOLONG rows", file=str(path))
    return rows


def from_file(
    path: Path, n: int | None, seed: int, dataset: str = "trec_coarse", context_len: int | None = None
) -> list[QATask]:
    """Tasks from official OOLONG-synth rows (see the module docstring); a seeded sample of ``n``."""
    rows = [
        r
        for r in _rows(Path(path))
        if r.get("dataset", dataset) == dataset
        and (context_len is None or int(r.get("context_len", context_len)) == context_len)
    ]
    missing = [
        k for k in ("context_window_text", "question", "answer", "answer_type") if rows and k not in rows[0]
    ]
    if not rows or missing:
        raise ConfigError(
            f"no usable {dataset} rows" + (f" (missing fields: {missing})" if missing else ""), file=str(path)
        )
    idx = list(range(len(rows)))
    if n is not None and n < len(rows):
        idx = sorted(random.Random(seed).sample(idx, n))
    tasks = []
    for k in idx:
        r = rows[k]
        meta = {
            "generator": {"family": "oolong", "file": Path(path).name, "n": n, "seed": seed, "index": k},
            "source": "official",
            "dataset": dataset,
            "oolong_id": r.get("id"),
            "context_len": r.get("context_len"),
            "task_group": r.get("task_group"),
        }
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"oolong-{dataset}-{r.get('id', k)}")
        tasks.append(
            _task(
                name,
                r["context_window_text"],
                r["question"],
                oolong_parse_gold(str(r["answer"])),
                r["answer_type"],
                meta,
            )
        )
    return tasks
