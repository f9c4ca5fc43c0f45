"""Judge prompts and robust parsing of their replies (pure Python: no model here).

Prompts follow the methods' published ones (cited per constant); the parser replaces AlpaGasus's brittle
`float(first line)` / `"Score:" ... strip('\\n')[0]` fallback (algorithms.md 5.1) with a tolerant reader that also
records *why* a reply could not be read.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# AlpaGasus (Chen et al. 2023; gpt4life/alpagasus rating/chatgpt_rating.py), accuracy dimension.
ALPAGASUS_SYSTEM = ("We would like to request your feedback on the performance of AI assistant in response to the "
                    "instruction and the given input displayed following.")
ALPAGASUS_USER = ("###Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n{output}\n\n"
                  "Please rate according to the accuracy of the response to the instruction and the input. Each "
                  "assistant receives a score on a scale of 0 to 5, where a higher score indicates higher level of "
                  "the accuracy. Please first output a single line containing value indicating the scores. In the "
                  "subsequent line, please provide a comprehensive explanation of your evaluation, avoiding any "
                  "potential bias.")
# What the digit-probability fallback appends after the judge prompt (the first line of the reply is the score).
ALPAGASUS_SCORE_LEAD = "Score:"

# Deita (Liu et al. ICLR 2024; hkust-nlp/deita src/deita/selection/scorer/llama_scorer.py).
DEITA_COMPLEXITY = ("You are a helpful assistant. Please identify the complexity score of the following user query. "
                    "\n##Query: {instruction}  \n##Complexity: ")
DEITA_QUALITY = ("You are a helpful assistant. Please identify the quality score of the Response corresponding to "
                 "the Question. \n #Question#:\n{instruction}\n#Response#:\n{output} \n##Quality: ")

# CaR's IQS model reads "Instruction: ... Input: ... Response: ..." (IronBeliever/CaR Ranking/split_IQS.py).
CAR_TEXT = "Instruction: {instruction} Input: {input} Response: {output}"

_WORDS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
          "nine": 9, "ten": 10}
_NUM = r"(\d+(?:\.\d+)?|\.\d+)"


@dataclass(frozen=True)
class Rating:
    score: float | None
    how: str            # what the parser matched, or why nothing could be read


def parse_rating(reply: str, lo: float = 0.0, hi: float = 5.0) -> Rating:
    """The score in a judge's reply, or `score=None` with the reason.

    Accepts "4.5", "Score: 4", "**4**/5", "4 out of 5", "[[4]]", "Rating - four", "8/10" (rescaled), a number
    first on the first line followed by an explanation. Rejects numbers outside [lo, hi] (after a /N rescale) and
    replies that hold two different candidate scores on the first line with no label."""
    if reply is None:
        return Rating(None, "no reply")
    text = reply.strip()
    if not text:
        return Rating(None, "empty reply")
    flat = re.sub(r"[*_`#\[\]]", " ", text)          # markdown emphasis, [[4]]
    for word, val in _WORDS.items():                  # "four" -> 4 (whole words only)
        flat = re.sub(rf"\b{word}\b", str(val), flat, flags=re.IGNORECASE)

    def ok(x: float) -> bool:
        return lo <= x <= hi

    # 1) "x / N" or "x out of N": rescale to [lo, hi] when N differs
    m = re.search(_NUM + r"\s*(?:/|out of)\s*(\d+(?:\.\d+)?)", flat, flags=re.IGNORECASE)
    if m:
        x, top = float(m.group(1)), float(m.group(2))
        if top > 0 and 0 <= x <= top:
            val = lo + (hi - lo) * x / top if top != hi else x
            return Rating(round(val, 4), f"'{m.group(0).strip()}'")
    # 2) a label: score / rating / grade / points
    m = re.search(r"(?:score|rating|grade|rated|points?)\s*(?:is|of|:|=|-)?\s*" + _NUM, flat, flags=re.IGNORECASE)
    if m and ok(float(m.group(1))):
        return Rating(float(m.group(1)), f"labelled '{m.group(0).strip()}'")
    # 3) the first line starts with a number (the format the AlpaGasus prompt asks for)
    first = next((ln for ln in flat.splitlines() if ln.strip()), "")
    m = re.match(r"\s*" + _NUM + r"(?![\d.]*\s*%)", first)
    if m and ok(float(m.group(1))):
        return Rating(float(m.group(1)), "number first on the first line")
    # 4) exactly one in-range number on the first line
    nums = [float(x) for x in re.findall(_NUM, first)]
    inrange = sorted({x for x in nums if ok(x)})
    if len(inrange) == 1:
        return Rating(inrange[0], "the only in-range number on the first line")
    if len(inrange) > 1:
        return Rating(None, f"ambiguous: several scores on the first line ({', '.join(map(str, inrange))})")
    if nums:
        return Rating(None, f"out of range [{lo:g}, {hi:g}]: {nums[0]:g}")
    return Rating(None, "no number in the reply")


def alpagasus_prompt(instruction: str, context: str, output: str) -> str:
    return ALPAGASUS_USER.format(instruction=instruction, input=context, output=output)


def short(text: str, n: int = 60) -> str:
    t = " ".join((text or "").split())
    return t if len(t) <= n else t[: n - 1] + "…"
