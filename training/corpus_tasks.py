"""What the target is asked to write as a user: the tasks and topics that steer its user turns.

The corpus's user turns are written by the target itself (the Magpie technique: given a chat
template up to the user header, an instruction-tuned model writes a plausible user message). Left
alone a small model writes the same few requests over and over, so every user turn is steered:
a system line says who is writing and about what (a task's persona and a topic), and the message
starts with one of the task's openers, which the model continues. Everything here was written for
this project; none of it comes from an evaluation set (training/corpus_leakage.py checks the
generated turns against them).

Each task names the evaluation subtask it feeds, so that the corpus covers every subtask of the
bundled and Spec-Bench sets: writing, roleplay, reasoning, math, coding, extraction, STEM,
humanities, translation, summarization, question answering, answers grounded in a given
document, law analytics and grammar correction.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    name: str
    weight: int  # relative share of the corpus's conversations
    persona: str  # who writes the user turn; "{topic}" is filled in
    openers: tuple[str, ...]  # how the user turn starts; "{topic}" and "{language}" are filled in
    max_user_tokens: int = 80  # a longer user turn is a runaway and is dropped


TOPICS = (
    "gardening", "home repair", "personal finance", "job interviews", "public speaking", "cooking dinner",
    "baking bread", "running a marathon", "learning the guitar", "raising a puppy", "planning a wedding",
    "moving to a new city", "saving energy at home", "composting", "beekeeping", "bird watching",
    "astronomy for beginners", "volcanoes", "ocean currents", "climate and weather", "rainforests",
    "desert animals", "the water cycle", "photosynthesis", "the human heart", "sleep", "nutrition",
    "vaccines", "antibiotics", "the immune system", "genetics", "evolution", "plate tectonics",
    "electric cars", "solar panels", "wind turbines", "batteries", "semiconductors", "the internet",
    "databases", "web browsers", "encryption", "machine learning", "robots", "3D printing",
    "spreadsheets", "project management", "small business marketing", "customer service", "negotiation",
    "renting an apartment", "buying a used car", "travel insurance", "packing for a trip",
    "visiting Japan", "visiting Peru", "the Roman Empire", "ancient Egypt", "the printing press",
    "the industrial revolution", "medieval castles", "the Silk Road", "world war history",
    "the history of jazz", "classical music", "painting with watercolors", "photography",
    "film editing", "writing poetry", "mystery novels", "science fiction", "mythology", "philosophy of mind",
    "ethics of technology", "economics of inflation", "supply and demand", "stock markets", "taxes",
    "city planning", "public transport", "recycling programs", "volunteering", "teaching children to read",
    "learning a second language", "study habits", "exam preparation", "time management", "remote work",
    "team meetings", "chess strategy", "board games", "video game design", "football tactics",
    "swimming technique", "yoga", "mountain hiking", "camping safety", "first aid", "fire safety",
    "chemistry of cooking", "acids and bases", "electric circuits", "magnets", "simple machines",
    "probability", "geometry", "fractions", "algebra word problems", "statistics in daily life",
    "tenancy agreements", "employment contracts", "consumer rights", "copyright", "privacy law",
    "small claims court", "wills and inheritance", "traffic rules", "neighbour disputes",
)

LANGUAGES = ("French", "Spanish", "German", "Italian", "Portuguese", "Dutch", "Chinese", "Japanese")

TASKS = (
    Task("writing", 3, "a person who wants help writing something about {topic}",
         ("Write a short story about", "Write a blog post about", "Draft an email to my",
          "Write a poem about", "Can you write a speech for", "Write a product description for")),
    Task("roleplay", 2, "a person who enjoys role-play games and is curious about {topic}",
         ("Pretend you are", "Imagine you are", "Let's play a game. You are", "Act as a",
          "You are a character in a story who")),
    Task("reasoning", 2, "a person who likes puzzles and logic questions about {topic}",
         ("If all", "A man has", "Which is heavier,", "Three friends", "Explain step by step why",
          "Is it true that")),
    Task("math", 3, "a student doing homework on {topic}",
         ("Solve for x:", "What is", "Calculate", "A train travels", "How many", "Find the area of",
          "If a shop sells")),
    Task("coding", 3, "a programmer working on a project about {topic}",
         ("Write a Python function that", "How do I", "Fix this code:", "Explain what this code does:",
          "Write a SQL query that", "What is the difference between", "Write a JavaScript function to")),
    Task("extraction", 2, "an office worker who needs facts pulled out of a text about {topic}",
         ("Extract all the names and dates from this text:", "From the following paragraph, list",
          "Read this and give me the key numbers:", "Turn this text into a JSON object with")),
    Task("stem", 3, "a curious learner asking about science and technology, here {topic}",
         ("How does", "Why do", "What is the role of", "Explain how", "What happens when",
          "Can you explain the science behind")),
    Task("humanities", 2, "a student of history, art and society interested in {topic}",
         ("What were the causes of", "Why was", "Compare", "What is the significance of",
          "How did", "Discuss the influence of")),
    Task("translation", 2, "a traveller who needs phrases about {topic} translated",
         ('Translate into {language}: "', "How do you say this in {language}:",
          "Please translate the following sentence to {language}:", "What does this mean in English:")),
    Task("summarization", 2, "a busy reader who wants a long text about {topic} shortened",
         ("Summarize the following article:\n\n", "Give me a short summary of this text:\n\n",
          "TL;DR of this:\n\n", "Summarize in three bullet points:\n\n"), max_user_tokens=224),
    Task("qa", 3, "a person with a quick factual question about {topic}",
         ("What is", "Who", "When did", "Where is", "What are the main", "Why is", "How long does")),
    Task("rag", 2, "a researcher who pastes a document about {topic} and asks a question about it",
         ("Based on the document below, answer the question.\n\nDocument:", "Read this passage and answer:",
          "Here is some context:\n\n", "Using only this text, tell me"), max_user_tokens=224),
    Task("law_analytics", 2, "a tenant, employee or small business owner with a legal question about {topic}",
         ("Is it legal for", "My landlord", "Can my employer", "What are my rights if",
          "Explain this clause:", "Does a contract need")),
    Task("grammar_correction", 2, "a language learner who wants their English corrected",
         ("Correct the grammar: ", "Fix the mistakes in this sentence: ", "Is this sentence correct? ",
          "Please proofread: ", "Rewrite this with correct grammar: ")),
)

# Second turns: the user answers the assistant's reply; each opener starts the follow-up.
FOLLOW_UP_OPENERS = (
    "Thanks! Can you", "Can you make it shorter?", "Now explain it to a child.", "Why?",
    "Can you give an example?", "What about", "Great. Now", "Could you rewrite that", "And what if",
    "Please add more detail about", "Can you turn that into a list?", "Is there another way to",
)
FOLLOW_UP_PERSONA = "the same person, continuing the conversation"


@dataclass(frozen=True)
class Seed:
    """One steered user turn to write: its id, task, system line and opener."""
    id: str
    task: str
    system: str
    opener: str
    max_user_tokens: int


def _rng(*parts) -> random.Random:
    """A generator that depends only on ``parts`` (not on Python's hash seed or call order)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def system_line(persona: str) -> str:
    return (f"You are {persona}. Write the next message you would send to an AI assistant: one "
            f"clear request or question, in your own words.")


def seeds(count: int, salt: str = "corpus-v1") -> list[Seed]:
    """``count`` user-turn seeds, tasks in proportion to their weights (interleaved, so any prefix
    of the list covers every task), topics, openers and languages drawn per seed."""
    wheel = [t for t in TASKS for _ in range(t.weight)]
    order = _rng(salt, "wheel")
    out = []
    for i in range(count):
        if i % len(wheel) == 0:
            order.shuffle(wheel)
        task = wheel[i % len(wheel)]
        rng = _rng(salt, i)
        topic, language = rng.choice(TOPICS), rng.choice(LANGUAGES)
        opener = rng.choice(task.openers).format(topic=topic, language=language)
        out.append(Seed(id=f"{task.name}-{i:06d}", task=task.name,
                        system=system_line(task.persona.format(topic=topic)), opener=opener,
                        max_user_tokens=task.max_user_tokens))
    return out


def follow_up_opener(conversation_id: str, salt: str = "corpus-v1") -> str:
    return _rng(salt, "follow-up", conversation_id).choice(FOLLOW_UP_OPENERS)
