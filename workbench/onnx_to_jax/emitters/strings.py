"""String tensors: StringConcat, StringSplit, StringNormalizer, RegexFullMatch, Equal on strings.

JAX has no string type, so these run on the host with numpy object arrays (``dtype=object`` holding
``str``) and are not jit-able: every input is read with ``ctx.host``, which makes the node a
value-dependent step between jitted parts (segments.py). Their numeric results (``Equal``,
``RegexFullMatch``, ``StringSplit``'s counts) are numpy arrays the jitted parts take as inputs.
Patterns and stop words come from the model: they reach the code only as escaped literals, and a
regular expression is matched with Python's ``re`` (close to RE2 for the usual syntax). Helpers that
need the standard library (``re``, ``unicodedata``) import it inside, so generated modules stay
self-contained.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from workbench.onnx_to_jax.context import NodeContext
from workbench.onnx_to_jax.registry import emitter, runtime_helper


def is_string(ctx: NodeContext, i: int) -> bool:
    return ctx.elem_type(i) == TensorProto.STRING


@runtime_helper
def _strings(x):
    """A string tensor as a numpy array of ``str`` (bytes decoded as UTF-8)."""
    values = np.asarray(x, dtype=object)
    flat = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values.reshape(-1)]
    return np.array(flat, dtype=object).reshape(values.shape)


@runtime_helper
def _string_concat(a, b):
    a, b = np.broadcast_arrays(_strings(a), _strings(b))
    return np.array([x + y for x, y in zip(a.reshape(-1), b.reshape(-1))], dtype=object).reshape(a.shape)


@emitter("StringConcat", since=20)
def string_concat(ctx: NodeContext) -> str:
    return ctx.call(_string_concat, ctx.host(0), ctx.host(1))


@runtime_helper
def _string_equal(a, b):
    a, b = np.broadcast_arrays(_strings(a), _strings(b))
    return np.array([x == y for x, y in zip(a.reshape(-1), b.reshape(-1))], dtype=bool).reshape(a.shape)


def equal_strings(ctx: NodeContext) -> str:
    """Equal on string tensors (called by the Equal emitter)."""
    return ctx.call(_string_equal, ctx.host(0), ctx.host(1))


@runtime_helper
def _regex_full_match(x, pattern):
    import re  # standard library, imported here so the generated module stays self-contained

    compiled = re.compile(pattern)
    values = _strings(x)
    return np.array([compiled.fullmatch(v) is not None for v in values.reshape(-1)], dtype=bool).reshape(values.shape)


@emitter("RegexFullMatch", since=20)
def regex_full_match(ctx: NodeContext) -> str:
    return ctx.call(_regex_full_match, ctx.host(0), ctx.lit(ctx.attr("pattern", "")))


@runtime_helper
def _string_split(x, delimiter, maxsplit):
    """(pieces padded with "" to the longest split, number of pieces) for every string."""
    values = _strings(x)
    limit = -1 if maxsplit is None else maxsplit
    pieces = [v.split(delimiter, limit) if delimiter else v.split(None, limit) for v in values.reshape(-1)]
    counts = np.array([len(p) for p in pieces], np.int64).reshape(values.shape)
    width = max([len(p) for p in pieces], default=0)
    padded = np.array([p + [""] * (width - len(p)) for p in pieces], dtype=object).reshape(values.shape + (width,))
    return padded, counts


@emitter("StringSplit", since=20)
def string_split(ctx: NodeContext) -> str:
    delimiter = ctx.attr("delimiter", "")
    maxsplit = ctx.attr("maxsplit", None)
    return ctx.call(_string_split, ctx.host(0), ctx.lit(delimiter or None), ctx.lit(maxsplit))


@runtime_helper
def _strip_accents(text):
    """Accented letters -> their base letters (NFKD, combining marks dropped), as the reference does."""
    import unicodedata  # standard library, imported here so the generated module stays self-contained

    if text.isascii():
        return text
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


@runtime_helper
def _string_normalizer(x, case_change_action, is_case_sensitive, stopwords):
    values = _strings(x)
    if values.ndim not in (1, 2):
        raise ValueError("StringNormalizer takes a [C] or [1, C] tensor")
    change = {"LOWER": str.lower, "UPPER": str.upper, "NONE": lambda s: s}[case_change_action]
    raw_stops = set(stopwords)
    stops = {change(w) for w in stopwords}

    def without(text, words):
        return " ".join(w for w in text.split(" ") if w not in words) if words else text

    out = []
    for text in values.reshape(-1):
        text = _strip_accents(text)
        if is_case_sensitive:
            text = change(without(text, raw_stops))
        else:
            text = without(change(text), stops)
        out.append(text)
    kept = [t for t in out if t]
    if not kept:
        kept = [""]
    result = np.array(kept, dtype=object)
    return result.reshape(1, -1) if values.ndim == 2 else result


@emitter("StringNormalizer", since=10)
def string_normalizer(ctx: NodeContext) -> str:
    action = ctx.attr("case_change_action", "NONE")
    if action not in ("LOWER", "UPPER", "NONE"):
        raise ctx.error(f"case_change_action must be LOWER, UPPER or NONE, got {action!r}")
    return ctx.call(_string_normalizer, ctx.host(0), ctx.lit(action), ctx.lit(bool(ctx.attr("is_case_sensitive", 0))),
                    ctx.lit(tuple(ctx.attr("stopwords", []))))


@runtime_helper
def _tfidf(x, grams, indexes, output_size, min_gram, max_gram, max_skip, mode, weights):
    """TfIdfVectorizer on the host: count the pooled n-grams of every row (items ``skip + 1`` apart for
    each allowed skip; unigrams once), then weigh the counts (TF, IDF or TFIDF)."""
    values = np.asarray(x)
    rows = values.reshape(1, -1) if values.ndim < 2 else values
    if values.dtype == object:
        rows = _strings(rows)
    counts = np.zeros((rows.shape[0], output_size), np.int64)
    table = {tuple(gram): index for gram, index in zip(grams, indexes)}
    for r, row in enumerate(rows.tolist()):
        length = len(row)
        smallest = min_gram
        for skip in range(1, max_skip + 2):
            for start in range(length):
                if start + skip * (smallest - 1) >= length:
                    break
                for size in range(smallest, max_gram + 1):
                    last = start + skip * (size - 1)
                    if last >= length:
                        break
                    index = table.get(tuple(row[start:last + 1:skip]))
                    if index is not None:
                        counts[r, index] += 1
            if smallest == 1:
                smallest = 2
                if smallest > max_gram:
                    break
    if mode == "TF" or (mode == "TFIDF" and weights is None):
        out = counts.astype(np.float32)
    elif mode == "IDF":
        out = np.where(counts > 0, 1.0 if weights is None else np.asarray(weights, np.float32), 0.0)
    else:
        out = np.asarray(weights, np.float32) * counts
    out = out.astype(np.float32)
    return out.reshape(-1) if values.ndim < 2 else out


@emitter("TfIdfVectorizer", since=9)
def tfidf_vectorizer(ctx: NodeContext) -> str:
    pool = ctx.attr("pool_int64s", None)
    pool = list(pool) if pool is not None else list(ctx.attr("pool_strings", []))
    starts = list(ctx.attr("ngram_counts"))
    min_gram, max_gram = ctx.attr("min_gram_length"), ctx.attr("max_gram_length")
    indexes = list(ctx.attr("ngram_indexes"))
    grams, kept = [], []
    ngram_id = 0
    for size, start in enumerate(starts, start=1):
        end = starts[size] if size < len(starts) else len(pool)
        for offset in range(start, end - size + 1, size):
            if min_gram <= size <= max_gram:
                grams.append(tuple(pool[offset:offset + size]))
                kept.append(indexes[ngram_id])
            ngram_id += 1
    weights = ctx.attr("weights", None)
    return ctx.call(_tfidf, ctx.host(0), ctx.lit(tuple(grams)), ctx.lit(tuple(kept)), ctx.lit(max(indexes) + 1),
                    ctx.lit(min_gram), ctx.lit(max_gram), ctx.lit(ctx.attr("max_skip_count", 0)),
                    ctx.lit(ctx.choice("mode", ("TF", "IDF", "TFIDF"))),
                    "None" if weights is None else ctx.lit(tuple(float(w) for w in weights)))
