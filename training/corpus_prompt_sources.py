"""Write the corpus prompt file from the hand-written material in training/prompt_sources/.

The first prompts of ``training/corpus_prompts.jsonl`` (the MT-bench-style categories: writing,
roleplay, reasoning, math, coding, extraction, stem, humanities, advice, explain, rewrite) were
written directly into that file. The others cover the remaining evaluation subtasks
(translation, summarization, qa, math_reasoning, rag, law_analytics, grammar_correction) and more
coding and extraction; they are assembled here from invented documents, sentences, clauses and
problems combined with a few instruction wordings, so that the same document is asked about in
several ways. Everything is deterministic: running this again rewrites the same file.

    python -m training.corpus_prompt_sources            # rewrite training/corpus_prompts.jsonl
    python -m training.corpus_prompt_sources --check    # exit 1 if the file is out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from training.prompt_sources import coding, extraction, grammar, law, math_problems, passages, qa, translation

PROMPT_FILE = Path(__file__).resolve().parent / "corpus_prompts.jsonl"

# Categories with prompts written into the file by hand get generated ids from 100 on, so the
# two kinds never collide and are easy to tell apart.
GENERATED_ID_START = {"coding": 100, "extraction": 100}

SUMMARY_REQUESTS = [
    "Summarize the following {kind} in about five sentences.\n\n{text}",
    "Read this {kind} and list its main points as bullet points.\n\n{text}",
    "Here is a {kind} titled \"{title}\".\n\n{text}\n\nWrite a one-paragraph summary for someone who has no time to read it.",
    "{text}\n\nGive a short summary of the text above in two or three sentences.",
    "Write a brief summary of this {kind}, then say in one sentence what the most important point is.\n\n{text}",
]

RAG_REQUESTS = [
    "Answer the question using only the document below. If the document does not contain the answer, say so.\n\n"
    "Document ({kind}): {title}\n{text}\n\nQuestion: {question}",
    "Context:\n{text}\n\nBased on the context above, {question_lower}",
    "Use the following passage to answer the question.\n\nPassage: {text}\n\nQuestion: {question}\nAnswer:",
    "I am going to give you a {kind}. Read it carefully and then answer my question.\n\n{text}\n\n"
    "My question: {question}",
]

EXTRA_EXTRACTION_REQUESTS = [
    "Extract all the names of people, places and organisations in this text, grouped by type.\n\n{text}",
    "Extract every date, time and number in the following text, each with a short note on what it refers to.\n\n{text}",
]


def _lower_first(question: str) -> str:
    return question[:1].lower() + question[1:]


def generated_prompts() -> list[dict]:
    """The assembled prompts, in a fixed order."""
    out: list[dict] = []
    counters: dict[str, int] = {}

    def add(category: str, prompt: str) -> None:
        n = counters.get(category, GENERATED_ID_START.get(category, 0))
        counters[category] = n + 1
        out.append({"id": f"{category}-{n:03d}", "category": category, "prompt": prompt})

    # Translation: into English from eight languages, and a few the other way.
    for i, (lang, text) in enumerate(translation.INTO_ENGLISH):
        template = translation.INTO_ENGLISH_INSTRUCTIONS[i % len(translation.INTO_ENGLISH_INSTRUCTIONS)]
        add("translation", template.format(lang=lang, text=text))
    for i, (lang, text) in enumerate(translation.FROM_ENGLISH):
        template = translation.FROM_ENGLISH_INSTRUCTIONS[i % len(translation.FROM_ENGLISH_INSTRUCTIONS)]
        add("translation", template.format(lang=lang, text=text))

    # Summarization and RAG over the long documents: three summaries and three questions each.
    for i, (title, kind, text, questions) in enumerate(passages.LONG):
        for k in range(3):
            template = SUMMARY_REQUESTS[(i + k) % len(SUMMARY_REQUESTS)]
            add("summarization", template.format(kind=kind, title=title, text=text))
        for k, question in enumerate(questions):
            template = RAG_REQUESTS[(i + k) % len(RAG_REQUESTS)]
            add("rag", template.format(kind=kind, title=title, text=text, question=question,
                                       question_lower=_lower_first(question)))
    # And over the medium-length ones: one summary and one question each.
    for i, (kind, text, question) in enumerate(passages.MEDIUM):
        add("summarization", SUMMARY_REQUESTS[(i + 1) % len(SUMMARY_REQUESTS)].format(kind=kind, title=kind, text=text))
        add("rag", RAG_REQUESTS[(i + 2) % len(RAG_REQUESTS)].format(
            kind=kind, title=kind, text=text, question=question, question_lower=_lower_first(question)))

    for i, question in enumerate(qa.QUESTIONS):
        add("qa", qa.STYLES[i % len(qa.STYLES)].format(q=question))

    k = 0
    for template, values in math_problems.PROBLEMS:
        for v in values:
            problem = template.format(**v)
            add("math_reasoning", math_problems.INSTRUCTIONS[k % len(math_problems.INSTRUCTIONS)].format(problem=problem))
            k += 1

    for i, (kind, text) in enumerate(law.CLAUSES):
        for question in law.CLAUSE_QUESTIONS:
            add("law_analytics", question.format(kind=kind, text=text))
    for i, (kind, facts, clause) in enumerate(law.SCENARIOS):
        template = law.SCENARIO_QUESTIONS[i % len(law.SCENARIO_QUESTIONS)]
        add("law_analytics", template.format(kind=kind, facts=facts, clause=clause))

    for i, sentence in enumerate(grammar.SENTENCES):
        add("grammar_correction", grammar.INSTRUCTIONS[i % len(grammar.INSTRUCTIONS)].format(text=sentence))
    for paragraph in grammar.PARAGRAPHS:
        for template in grammar.PARAGRAPH_INSTRUCTIONS:
            add("grammar_correction", template.format(text=paragraph))

    for task in coding.TASKS:
        add("coding", task)

    for i, (text, request) in enumerate(extraction.ITEMS):
        add("extraction", f"{text}\n\n{request}" if i % 2 else f"{request}\n\n{text}")
    for index, request in extraction.PASSAGE_EXTRACTIONS:
        title, kind, text, _ = passages.LONG[index]
        add("extraction", f"{request}\n\n{text}")
    for i, (text, _) in enumerate(extraction.ITEMS):
        add("extraction", EXTRA_EXTRACTION_REQUESTS[i % len(EXTRA_EXTRACTION_REQUESTS)].format(text=text))
    return out


def hand_written_prompts(path: Path) -> list[dict]:
    """The prompts of the file that this module does not generate (kept as they are, first)."""
    if not path.is_file():
        return []
    generated = {p["id"] for p in generated_prompts()}
    with open(path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [r for r in records if r["id"] not in generated]


def render(path: Path) -> str:
    prompts = hand_written_prompts(path) + generated_prompts()
    ids = [p["id"] for p in prompts]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"duplicate prompt ids: {duplicates}")
    return "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in prompts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=PROMPT_FILE, help="prompt file to rewrite (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="only check that the file is up to date")
    args = parser.parse_args(argv)
    text = render(args.out)
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.is_file() else ""
        if current != text:
            print(f"{args.out} is out of date: run python -m training.corpus_prompt_sources", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {text.count(chr(10))} prompts to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
