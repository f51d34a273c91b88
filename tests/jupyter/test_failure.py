"""The short failure message's parts: other input layouts to try, and the advice for each kind of error."""

from __future__ import annotations

from workbench.jupyter.failure import advice, find_working_layout, layout_candidates, root_cause


def test_layout_candidates_try_channels_last_and_first_before_other_moves() -> None:
    candidates = layout_candidates(["B,3,32,32"])
    assert candidates[0] == (0, "B,32,32,3", "input 1 channels last (NHWC), not channels first")
    assert candidates[1] == (0, "B,32,3,32", "input 1 channels first (NCHW), not channels last")
    texts = [text for _, text, _ in candidates]
    assert len(texts) == len(set(texts)) <= 8 and "B,3,32,32" not in texts


def test_layout_candidates_keep_the_dtype_and_skip_scalars() -> None:
    assert layout_candidates(["B,3:int32", ":int32", "7"]) == [(0, "3,B:int32", "input 1 as (3, B), the same dims in another order")]


def test_find_working_layout_stops_at_the_first_that_traces() -> None:
    tried: list[list[str]] = []

    def traces(texts: list[str]) -> bool:
        tried.append(texts)
        return texts == ["B,32,32,3", "4"]

    assert find_working_layout(traces, ["B,3,32,32", "4"]) == (["B,32,32,3", "4"], "input 1 channels last (NHWC), not channels first")
    assert tried == [["B,32,32,3", "4"]]
    assert find_working_layout(lambda texts: False, ["B,3,32,32"]) is None


def test_advice_by_kind_of_error() -> None:
    never = lambda texts: False  # noqa: E731
    assert "does not fit" not in advice(KeyError("x"), ["B,4"], "f", never)
    assert advice(KeyError("x"), ["B,4"], "f", never).startswith("fix the error at this line")
    assert "not from a line of yours" in advice(KeyError("x"), ["B,4"], "f", never, in_user_code=False)
    shape_error = ValueError("incompatible shapes for broadcasting: (4,) and (5,)")
    assert "check that -i B,4 gives each input the shape it expects" in advice(shape_error, ["B,4"], "f", never)
    assert advice(shape_error, ["4,5"], "f", lambda texts: texts == ["5,4"]).startswith("f traces with -i 5,4: it expects input 1 as (5, 4)")


def test_root_cause_follows_raise_from() -> None:
    try:
        try:
            raise ValueError("inner")
        except ValueError as inner:
            raise RuntimeError("outer") from inner
    except RuntimeError as outer:
        assert str(root_cause(outer)) == "inner"
