"""Semantic IDs as text: one special token per (level, code), between start and end markers.

    (12, 200, 7, 0)  <->  "[SEM_START][SEM_0_12][SEM_1_200][SEM_2_7][SEM_3_0][SEM_END]"

The collision level (the last code of a deduplicated ID) is a level like the others. Every
token is added to the LM's vocabulary as one special token, so an ID is always
``n_levels + 2`` tokens and decoding can be constrained token by token.
"""
import re

SEM_START = "[SEM_START]"
SEM_END = "[SEM_END]"
REC = "[REC]"          # ends a query that asks for an item: the LM answers with a semantic ID
_CODE = re.compile(r"\[SEM_(\d+)_(\d+)\]")


class SemanticIDStringError(ValueError):
    """A string that is not exactly one well-formed semantic ID."""


def code_token(level, code):
    return f"[SEM_{int(level)}_{int(code)}]"


def semantic_id_tokens(codebook_sizes):
    """Every token an ID over ``codebook_sizes`` can use: the markers, then level by level."""
    tokens = [SEM_START, SEM_END]
    for level, size in enumerate(codebook_sizes):
        tokens += [code_token(level, c) for c in range(int(size))]
    return tokens


def semantic_id_to_string(codes):
    """(c_0, ..., c_{L-1}) -> '[SEM_START][SEM_0_c0]...[SEM_END]'."""
    codes = [int(c) for c in codes]
    if not codes or any(c < 0 for c in codes):
        raise SemanticIDStringError(f"a semantic ID needs one or more codes >= 0, got {codes}")
    return SEM_START + "".join(code_token(level, c) for level, c in enumerate(codes)) + SEM_END


def string_to_semantic_id(text, n_levels=None, codebook_sizes=None):
    """The codes of a string holding exactly one semantic ID (surrounding whitespace allowed).

    Strict: anything between or around the tokens, a level out of order, a missing marker, a
    wrong number of levels (``n_levels``) or a code outside ``codebook_sizes`` is an error
    that says what was expected.
    """
    s = text.strip()
    if not s.startswith(SEM_START):
        raise SemanticIDStringError(f"{text!r}: a semantic ID starts with {SEM_START}")
    if not s.endswith(SEM_END):
        raise SemanticIDStringError(f"{text!r}: a semantic ID ends with {SEM_END}")
    body = s[len(SEM_START): len(s) - len(SEM_END)]
    codes, pos = [], 0
    for match in _CODE.finditer(body):
        if match.start() != pos:
            raise SemanticIDStringError(f"{text!r}: unexpected {body[pos:match.start()]!r} between code tokens")
        level, code = int(match.group(1)), int(match.group(2))
        if level != len(codes):
            raise SemanticIDStringError(f"{text!r}: level {level} where level {len(codes)} was expected")
        if codebook_sizes is not None and level < len(codebook_sizes) and code >= int(codebook_sizes[level]):
            raise SemanticIDStringError(
                f"{text!r}: code {code} at level {level} is outside [0, {int(codebook_sizes[level])})")
        codes.append(code)
        pos = match.end()
    if pos != len(body):
        raise SemanticIDStringError(f"{text!r}: unexpected {body[pos:]!r} where a code token or {SEM_END} was expected")
    expected = n_levels if n_levels is not None else (len(codebook_sizes) if codebook_sizes is not None else None)
    if not codes or (expected is not None and len(codes) != expected):
        raise SemanticIDStringError(f"{text!r}: {len(codes)} codes, expected {expected or 'at least 1'}")
    return tuple(codes)


def find_semantic_ids(text):
    """Every well-formed ID inside a longer text, in order (for free-text answers)."""
    found = []
    for match in re.finditer(re.escape(SEM_START) + r"(?:\[SEM_\d+_\d+\])+" + re.escape(SEM_END), text):
        try:
            found.append(string_to_semantic_id(match.group(0)))
        except SemanticIDStringError:
            pass
    return found
