"""Hand-written material for the corpus prompts (see training/corpus_prompt_sources.py).

Every text here was written for this project: invented reports, notes, histories, clauses and
sentences. Nothing is taken from an evaluation question set or a public data set.
"""
