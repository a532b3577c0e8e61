"""The question loader: Spec-Bench's file loads, bad lines are refused by file and line, and the
bundled question set meets the benchmark's shape."""

import json
import re
from collections import Counter, defaultdict

import pytest

from evaluation.record import questions as qs
from evaluation.record.questions import Question, QuestionFileError, load_questions, question_file_for_bench
from evaluation.record.subtasks import MT_BENCH_CATEGORIES, SPEC_BENCH_SUBTASKS, subtask_of
from tests.conftest import ROOT, SHARED_QUESTIONS

BUNDLED = ROOT / "data" / "bundled" / "question.jsonl"
needs_shared_file = pytest.mark.skipif(not SHARED_QUESTIONS.is_file(), reason="shared Spec-Bench file absent")

GOOD = {"question_id": 1, "category": "qa", "turns": ["What is the boiling point of water at sea level?"]}


def write_lines(tmp_path, *lines: str):
    path = tmp_path / "question.jsonl"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def line(**fields) -> str:
    return json.dumps(fields)


# ---------------------------------------------------------------------------------------------
# Loading good files


def test_loads_questions_in_file_order_with_optional_reference(tmp_path):
    path = write_lines(
        tmp_path,
        line(question_id=7, category="writing", turns=["Write a haiku.", "Now make it rhyme."]),
        line(question_id="q-2", category="math_reasoning", turns=["2+2?"], reference=["#### 4"]),
    )
    assert load_questions(path) == [
        Question(7, "writing", ["Write a haiku.", "Now make it rhyme."], None),
        Question("q-2", "math_reasoning", ["2+2?"], ["#### 4"]),
    ]


def test_blank_lines_are_skipped_and_do_not_count_as_positions(tmp_path):
    path = write_lines(tmp_path, "", line(**GOOD), "   ", line(**{**GOOD, "question_id": 2}), "")
    assert [q.question_id for q in load_questions(path)] == [1, 2]
    assert [q.question_id for q in load_questions(path, begin=1)] == [2]


def test_begin_end_are_positional_and_end_exclusive(tmp_path):
    path = write_lines(tmp_path, *(line(**{**GOOD, "question_id": 100 + i}) for i in range(5)))
    assert [q.question_id for q in load_questions(path, begin=1, end=3)] == [101, 102]
    assert [q.question_id for q in load_questions(path, end=2)] == [100, 101]
    assert [q.question_id for q in load_questions(path, begin=-1)] == [104]


def test_a_bad_line_outside_the_slice_is_still_reported(tmp_path):
    path = write_lines(tmp_path, line(**GOOD), "{oops")
    with pytest.raises(QuestionFileError, match="line 2"):
        load_questions(path, begin=0, end=1)


def test_extra_categories_are_accepted_only_when_declared(tmp_path):
    path = write_lines(tmp_path, line(**{**GOOD, "category": "poetry"}))
    with pytest.raises(QuestionFileError, match="unknown category 'poetry'"):
        load_questions(path)
    assert load_questions(path, extra_categories=("poetry",))[0].category == "poetry"


def test_question_knows_its_subtask_from_the_shared_grouping():
    assert Question(1, "roleplay", ["x"]).subtask == "mt_bench"
    assert Question(2, "rag", ["x"]).subtask == "rag"


# ---------------------------------------------------------------------------------------------
# Refusing bad files: every message names the file, the line and what is wrong


@pytest.mark.parametrize(
    "bad_line, what",
    [
        ('{"question_id": 2, "category": "qa", "turns": ["x"]', "malformed JSON"),
        ('["not", "an", "object"]', "expected a JSON object, got list"),
        (line(category="qa", turns=["x"]), "missing question_id"),
        (line(question_id=None, category="qa", turns=["x"]), "question_id must be an int or a non-empty string"),
        (line(question_id=True, category="qa", turns=["x"]), "question_id must be an int or a non-empty string"),
        (line(question_id=1, category="qa", turns=["x"]), "duplicate question_id 1 (first seen on line 1)"),
        (line(question_id="1", category="qa", turns=["x"]), "duplicate question_id '1' (first seen on line 1)"),
        (line(question_id=2, category="qa", turns=[]), "turns must be a non-empty list"),
        (line(question_id=2, category="qa", turns="just a string"), "turns must be a non-empty list"),
        (line(question_id=2, category="qa"), "turns must be a non-empty list"),
        (line(question_id=2, category="qa", turns=["fine", 3]), "turns[1] must be a non-empty string"),
        (line(question_id=2, category="qa", turns=["  "]), "turns[0] must be a non-empty string"),
        (line(question_id=2, category="cooking", turns=["x"]), "unknown category 'cooking'"),
        (line(question_id=2, turns=["x"]), "missing or non-string category"),
        (line(question_id=2, category="qa", turns=["x"], reference="4"), "reference must be a list"),
    ],
    ids=[
        "malformed-json", "not-an-object", "missing-id", "null-id", "bool-id", "duplicate-id",
        "duplicate-id-as-string", "empty-turns", "turns-not-a-list", "no-turns", "non-string-turn",
        "blank-turn", "unknown-category", "missing-category", "bad-reference",
    ],
)
def test_bad_line_is_refused_naming_file_and_line(tmp_path, bad_line, what):
    # The bad line is line 3: after a good line and a blank one, so numbering counts blank lines.
    path = write_lines(tmp_path, line(**GOOD), "", bad_line)
    with pytest.raises(QuestionFileError) as caught:
        load_questions(path)
    message = str(caught.value)
    assert message.startswith(f"{path}, line 3: ")
    assert what in message


def test_invalid_utf8_names_its_line(tmp_path):
    path = tmp_path / "question.jsonl"
    path.write_bytes(line(**GOOD).encode() + b"\n" + b'{"question_id": 2, "turns": ["\xff"]}\n')
    with pytest.raises(QuestionFileError, match=r", line 2: not valid UTF-8"):
        load_questions(path)


@pytest.mark.parametrize("content", ["", "\n\n   \n"], ids=["empty", "only-blank-lines"])
def test_empty_file_is_refused(tmp_path, content):
    path = tmp_path / "question.jsonl"
    path.write_text(content)
    with pytest.raises(QuestionFileError, match=r"question.jsonl: the file is empty"):
        load_questions(path)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(QuestionFileError, match=r"nowhere\.jsonl: question file not found"):
        load_questions(tmp_path / "nowhere.jsonl")


def test_question_file_error_is_a_value_error():
    assert issubclass(QuestionFileError, ValueError)


def test_long_bad_values_are_cut_short_in_messages(tmp_path):
    path = write_lines(tmp_path, line(question_id=1, category="qa", turns=[["x" * 5000]]))
    with pytest.raises(QuestionFileError) as caught:
        load_questions(path)
    assert len(str(caught.value)) < len(str(path)) + 200


# ---------------------------------------------------------------------------------------------
# Bench names


def test_bench_name_maps_to_its_data_folder():
    assert question_file_for_bench("bundled") == ROOT / "data" / "bundled" / "question.jsonl"


def test_missing_spec_bench_file_says_how_to_fetch_it(tmp_path, monkeypatch):
    monkeypatch.setattr(qs, "DATA_DIR", tmp_path)
    with pytest.raises(QuestionFileError, match=r"python -m evaluation\.fetch_questions"):
        question_file_for_bench("spec_bench")


def test_unknown_bench_lists_the_benches_there_are(tmp_path, monkeypatch):
    monkeypatch.setattr(qs, "DATA_DIR", tmp_path)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "question.jsonl").write_text(line(**GOOD) + "\n")
    assert question_file_for_bench("mine") == tmp_path / "mine" / "question.jsonl"
    with pytest.raises(QuestionFileError, match=r"no question file for bench 'nope'.*mine"):
        question_file_for_bench("nope")


@pytest.mark.parametrize("name", ["../bundled", "a/b", "", ".hidden"])
def test_bench_name_cannot_leave_the_data_folder(name):
    with pytest.raises(QuestionFileError, match="invalid bench name"):
        question_file_for_bench(name)


# ---------------------------------------------------------------------------------------------
# The public Spec-Bench file


@needs_shared_file
def test_spec_bench_file_loads_with_its_480_questions():
    questions = load_questions(SHARED_QUESTIONS)
    assert len(questions) == 480
    assert [q.question_id for q in questions] == list(range(81, 561))
    per_subtask = Counter(q.subtask for q in questions)
    assert per_subtask == {subtask: 80 for subtask in SPEC_BENCH_SUBTASKS}
    assert all(len(q.turns) == 2 for q in questions if q.subtask == "mt_bench")
    # rag references are lists of acceptable answers, kept as they are.
    assert isinstance(next(q for q in questions if q.category == "rag").reference[0], list)


@needs_shared_file
def test_spec_bench_slice_matches_spec_bench_positions():
    questions = load_questions(SHARED_QUESTIONS, begin=80, end=82)
    assert [(q.question_id, q.category) for q in questions] == [(161, "translation"), (162, "translation")]


# ---------------------------------------------------------------------------------------------
# The bundled question set (data/bundled/question.jsonl, bench name "bundled")


@pytest.fixture(scope="module")
def bundled():
    return load_questions(question_file_for_bench("bundled"))


def by_subtask(questions) -> dict[str, list[Question]]:
    groups = defaultdict(list)
    for question in questions:
        groups[subtask_of(question.category)].append(question)
    return groups


def word_count(text: str) -> int:
    return len(text.split())


def test_bundled_file_validates_with_known_categories_and_ids_clear_of_spec_bench(bundled):
    ids = [q.question_id for q in bundled]
    assert all(isinstance(i, int) and i >= 100001 for i in ids)  # Spec-Bench uses 81-560
    assert len(set(ids)) == len(ids)


def test_bundled_set_covers_every_subtask_with_at_least_eight_questions(bundled):
    groups = by_subtask(bundled)
    expected = set(SPEC_BENCH_SUBTASKS) | {"law_analytics", "grammar_correction"}
    assert set(groups) == expected
    for subtask in expected:
        assert len(groups[subtask]) >= 8, subtask


def test_bundled_mt_bench_has_two_two_turn_questions_per_category(bundled):
    per_category = Counter(q.category for q in bundled if q.subtask == "mt_bench")
    assert per_category == {category: 2 for category in MT_BENCH_CATEGORIES}
    for question in bundled:
        expected_turns = 2 if question.subtask == "mt_bench" else 1
        assert len(question.turns) == expected_turns, question.question_id


def test_bundled_translation_comes_from_several_languages_with_english_references(bundled):
    languages = Counter()
    for question in by_subtask(bundled)["translation"]:
        match = re.fullmatch(r"Translate ([A-Z][a-z]+) to English: (\S.*)", question.turns[0], flags=re.S)
        assert match, question.question_id
        languages[match.group(1)] += 1
        assert question.reference and question.reference[0].strip()
    assert len(languages) >= 5
    assert "English" not in languages


def test_bundled_summarization_articles_have_at_least_250_words(bundled):
    for question in by_subtask(bundled)["summarization"]:
        prompt = question.turns[0]
        assert prompt.startswith("Summarize: ")
        assert word_count(prompt.removeprefix("Summarize: ")) >= 250, question.question_id


def test_bundled_rag_has_250_words_of_passages_then_a_question_on_the_last_line(bundled):
    for question in by_subtask(bundled)["rag"]:
        passages, last_line = question.turns[0].rsplit("\n", 1)
        assert last_line.rstrip().endswith("?"), question.question_id
        assert word_count(passages) >= 250, question.question_id
        assert passages.count("\n") >= 1  # several passages, one per line


def test_bundled_qa_questions_are_short(bundled):
    for question in by_subtask(bundled)["qa"]:
        assert "\n" not in question.turns[0]
        assert len(question.turns[0]) <= 100, question.question_id


def test_bundled_math_reasoning_has_worked_references_with_a_final_answer(bundled):
    for question in by_subtask(bundled)["math_reasoning"]:
        assert question.reference, question.question_id
        assert re.search(r"\n#### [0-9][0-9.,:]*$", question.reference[0]), question.question_id


def test_bundled_grammar_references_differ_from_the_faulty_text(bundled):
    for question in by_subtask(bundled)["grammar_correction"]:
        faulty = question.turns[0].split("\n\n", 1)[1]
        assert question.reference and question.reference[0] != faulty


def shingles(text: str, size: int = 8) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z0-9']+", text.lower())
    return {tuple(words[i:i + size]) for i in range(len(words) - size + 1)}


@needs_shared_file
def test_bundled_texts_share_no_eight_word_run_with_spec_bench(bundled):
    spec_bench = set()
    for question in load_questions(SHARED_QUESTIONS):
        for turn in question.turns:
            spec_bench |= shingles(turn)
    for question in bundled:
        for turn in question.turns:
            assert not shingles(turn) & spec_bench, question.question_id


def test_committed_bundled_file_is_what_its_generator_writes():
    # The generator is the readable source of truth; an edit to one without the other must fail.
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_questions", BUNDLED.parent / "build_questions.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    assert BUNDLED.read_text(encoding="utf-8") == generator.render(generator.build_questions()), (
        "data/bundled/question.jsonl is stale: run `python data/bundled/build_questions.py`"
    )


def test_first_per_subtask_keeps_file_order_and_groups_mt_bench(tmp_path):
    from evaluation.record.questions import first_per_subtask
    rows = [(1, "writing"), (2, "coding"), (3, "qa"), (4, "qa"), (5, "translation"), (6, "qa"),
            (7, "roleplay")]
    path = tmp_path / "q.jsonl"
    path.write_text("".join(json.dumps({"question_id": i, "category": c, "turns": ["x"]}) + "\n"
                            for i, c in rows))
    questions = load_questions(path)
    assert [q.question_id for q in first_per_subtask(questions, 1)] == [1, 3, 5]
    assert [q.question_id for q in first_per_subtask(questions, 2)] == [1, 2, 3, 4, 5]


def test_bundled_set_gives_one_question_of_each_of_its_eight_subtasks():
    from evaluation.record.questions import first_per_subtask, question_file_for_bench
    chosen = first_per_subtask(load_questions(question_file_for_bench("bundled")), 1)
    assert len(chosen) == len({q.subtask for q in chosen}) == 8


def test_a_tampered_spec_bench_file_is_refused_with_how_to_fetch_it_again(tmp_path, monkeypatch):
    import hashlib

    monkeypatch.setattr(qs, "DATA_DIR", tmp_path)
    path = tmp_path / "spec_bench" / "question.jsonl"
    path.parent.mkdir()
    pinned = line(**GOOD) + "\n"
    path.write_text(pinned)
    monkeypatch.setattr(qs, "SPEC_BENCH_SHA256", hashlib.sha256(pinned.encode()).hexdigest())
    assert question_file_for_bench("spec_bench") == path  # the pinned file passes
    path.write_text(pinned.replace("?", "!") + line(**{**GOOD, "question_id": 2}) + "\n")
    with pytest.raises(QuestionFileError) as caught:
        question_file_for_bench("spec_bench")
    message = str(caught.value)
    assert message.startswith(f"{path}: sha256 ") and "\n" not in message
    assert "edited or damaged; run `python -m evaluation.fetch_questions` to fetch it again" in message
