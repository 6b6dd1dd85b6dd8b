"""Word error rate: how far what the agent heard is from what the caller said. Pure.

Texts are compared as words: lower-cased, punctuation dropped, apostrophes removed
inside words (``What's`` → ``whats``), so a transcriber's capitalisation and punctuation
never count as errors. :func:`word_error_rate` is the classic measure (substitutions +
deletions + insertions over the reference's words). :func:`phrase_error_rate` scores a
short expected phrase against a longer transcript: the words of the transcript before
and after the best-matching stretch are free, so ``"weather in Paris"`` matches
``"What's the weather in Paris?"`` with 0.0.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["normalize_words", "phrase_error_rate", "word_error_rate"]

_APOSTROPHES = re.compile(r"['\u2019\u02bc]")
_NOT_WORD = re.compile(r"[^\w]+")


def normalize_words(text: str) -> list[str]:
    """The words of ``text`` as compared: case-folded, NFKC, no punctuation."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _APOSTROPHES.sub("", text)
    return [w for w in _NOT_WORD.sub(" ", text).replace("_", " ").split() if w]


def _distances(reference: list[str], hypothesis: list[str], *, free_ends: bool) -> int:
    """Edit distance (word level). With ``free_ends``, skipping hypothesis words before
    and after the aligned stretch costs nothing (a semi-global alignment)."""
    previous = [0] * (len(hypothesis) + 1) if free_ends else list(range(len(hypothesis) + 1))
    for i, ref_word in enumerate(reference, start=1):
        current = [i] + [0] * len(hypothesis)
        for j, hyp_word in enumerate(hypothesis, start=1):
            current[j] = min(
                previous[j] + 1,  # the reference word was not heard (deletion)
                current[j - 1] + 1,  # an extra word was heard (insertion)
                previous[j - 1] + (ref_word != hyp_word),  # match or substitution
            )
        previous = current
    return min(previous) if free_ends else previous[-1]


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / words of ``reference``.

    0.0 is a perfect match; it can exceed 1.0 when much more was heard than said. An
    empty reference scores 0.0 against an empty hypothesis and 1.0 otherwise.
    """
    ref, hyp = normalize_words(reference), normalize_words(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return _distances(ref, hyp, free_ends=False) / len(ref)


def phrase_error_rate(phrase: str, transcript: str) -> float:
    """The word error rate of ``phrase`` against its best-matching stretch of ``transcript``.

    0.0 when the phrase occurs word for word; 1.0 (at most) when none of it was heard.
    An empty phrase scores 0.0.
    """
    ref, hyp = normalize_words(phrase), normalize_words(transcript)
    if not ref:
        return 0.0
    return _distances(ref, hyp, free_ends=True) / len(ref)
