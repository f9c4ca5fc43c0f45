"""Answer compression conditioned on the compressed question (the paper's Eq. 2), and the `damoc` compressor.

Eq. 2: s_i = perplexity(x_ans_i | x~_que, x_ans_<i). Each answer token is scored by its loss given the compressed
question and the answer tokens before it (the earlier answer windows in their compressed form, as LLMLingua's
iterative loop); the least surprising tokens are dropped to the budget. Note what this does to answer tokens the
question already states: they become predictable and are dropped first, since the question carries them.

`contrastive=True` scores instead with LongLLMLingua's s_i = loss(a_i | a_<i) - loss(a_i | x~_que, a_<i), which keeps
the tokens the question makes *more* likely (the paper's wording "highlights tokens closely associated with the
question" fits this reading too; the two readings pull question-echo tokens in opposite directions, so both are
offered and the default follows the formula as printed).
"""
from __future__ import annotations

from collections.abc import Generator

import numpy as np

from damoc.compress.config import PROMPT_FIELDS
from damoc.compress.method import Compressor, Masks
from damoc.compress.question import Env, compress_prompt_fields, iterative
from damoc.compress.text import FieldTokens
from damoc.compress.token_loss import Request


def compress_answer(ans: FieldTokens, ratio: float, env: Env, *, question_ids: list[int], contrastive: bool = False
                    ) -> Generator[list[Request], list[np.ndarray], tuple[list[bool], list[float]]]:
    """Keep mask and scores of the answer's units, conditioned on `question_ids` (the compressed prompt)."""
    return (yield from iterative(ans, ratio, env, prefix=question_ids,
                                 prefix0=[] if contrastive else None))


class DaMoC(Compressor, name="damoc"):
    """DaMoC token compression of one sample: the prompt fields LLMLingua-style, then the answer by Eq. 2."""

    def compress(self, fields: dict[str, FieldTokens], ratios: dict[str, float], env: Env, *,
                 contrastive: bool = False, rate: float = 0.5) -> Masks:
        keeps, q_ids = yield from compress_prompt_fields(fields, ratios, env, PROMPT_FIELDS)
        ans = fields.get("answer")
        if ans is not None and ans.units:
            keeps["answer"], _ = yield from compress_answer(ans, ratios.get("answer", 1.0), env, question_ids=q_ids,
                                                            contrastive=contrastive)
        return keeps
