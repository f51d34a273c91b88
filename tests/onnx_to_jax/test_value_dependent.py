"""Detector-shaped graphs: the bugs real detection exports hit, and models whose shapes depend on values.

Each model is built with onnx.helper and checked against onnxruntime. The value-dependent ones
(NonZero, NonMaxSuppression) run as jitted parts with the value-dependent nodes in between
(workbench/onnx_to_jax/segments.py); the tests check the results, the parts and that each part
compiles once (a second call with the same shapes traces nothing).
"""

from __future__ import annotations

import jax
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from tests.support.harness import run_onnx
from workbench.onnx_to_jax.api import generate_module

OPSET = [helper.make_opsetid("", 17)]


def _model(nodes, inputs, outputs, initializers=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=OPSET, ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


def _value(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def _outputs(result):
    return result if isinstance(result, tuple) else (result,)


def _assert_matches(model, inputs, *, rtol=1e-5, atol=1e-6, jit=False):
    expected = run_onnx(model, inputs)
    forward, params = wb.to_jax(model)
    call = jax.jit(forward) if jit else forward
    got = _outputs(call(params, *inputs))
    assert len(got) == len(expected)
    for want, have in zip(expected, got):
        assert np.shape(have) == want.shape
        np.testing.assert_allclose(np.asarray(have), want, rtol=rtol, atol=atol)


def test_split_with_one_output_binds_the_array_not_the_tuple():
    # torch's legacy exporter writes Split(images, split=[1]) -> Squeeze for a batch of one image
    nodes = [
        helper.make_node("Split", ["x", "sizes"], ["part"], axis=0),
        helper.make_node("Squeeze", ["part", "axis0"], ["y"]),
    ]
    inits = [numpy_helper.from_array(np.array([1], np.int64), "sizes"),
             numpy_helper.from_array(np.array([0], np.int64), "axis0")]
    model = _model(nodes, [_value("x", [1, 3, 4])], [_value("y", [3, 4])], inits)
    x = np.random.default_rng(0).standard_normal((1, 3, 4)).astype(np.float32)
    _assert_matches(model, [x], jit=True)


def test_resize_sizes_computed_through_reciprocal_stay_static_under_jit():
    # sizes = floor(shape[2:] * (1 / 0.5)): Reciprocal of a constant must fold like the rest
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Slice", ["shape", "two", "four"], ["hw"]),
        helper.make_node("Cast", ["hw"], ["hw_f"], to=TensorProto.FLOAT),
        helper.make_node("Reciprocal", ["half"], ["factor"]),
        helper.make_node("Mul", ["hw_f", "factor"], ["scaled"]),
        helper.make_node("Floor", ["scaled"], ["floored"]),
        helper.make_node("Cast", ["floored"], ["hw_out"], to=TensorProto.INT64),
        helper.make_node("Concat", ["nc", "hw_out"], ["sizes"], axis=0),
        helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="linear"),
    ]
    inits = [
        numpy_helper.from_array(np.array([2], np.int64), "two"),
        numpy_helper.from_array(np.array([4], np.int64), "four"),
        numpy_helper.from_array(np.array([1, 2], np.int64), "nc"),
    ]
    half = helper.make_node("Constant", [], ["half"], value=numpy_helper.from_array(np.array([0.5], np.float32)))
    model = _model([half, *nodes], [_value("x", [1, 2, 5, 6])], [_value("y", [1, 2, 10, 12])], inits)
    generated = generate_module(model)
    assert generated.value_dependent_nodes == ()
    x = np.random.default_rng(1).standard_normal((1, 2, 5, 6)).astype(np.float32)
    _assert_matches(model, [x], jit=True)


def _roi_align_model(sampling_ratio: int) -> onnx.ModelProto:
    node = helper.make_node("RoiAlign", ["x", "rois", "batch"], ["y"], output_height=2, output_width=3,
                            sampling_ratio=sampling_ratio, spatial_scale=0.5)
    return _model([node], [_value("x", [1, 4, 8, 8]), _value("rois", ["R", 4]),
                           _value("batch", ["R"], TensorProto.INT64)], [_value("y", ["R", 4, 2, 3])])


@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_roi_align_with_no_rois_gives_an_empty_result(sampling_ratio):
    x = np.random.default_rng(2).standard_normal((1, 4, 8, 8)).astype(np.float32)
    rois = np.zeros((0, 4), np.float32)
    batch = np.zeros((0,), np.int64)
    _assert_matches(_roi_align_model(sampling_ratio), [x, rois, batch])


def test_roi_align_with_rois_matches_onnxruntime():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 4, 8, 8)).astype(np.float32)
    corners = np.sort(rng.uniform(0, 15, (5, 2, 2)), axis=1).reshape(5, 4)[:, [0, 2, 1, 3]].astype(np.float32)
    _assert_matches(_roi_align_model(2), [x, corners, np.zeros((5,), np.int64)], rtol=1e-4, atol=1e-5)


def _detector_tail() -> onnx.ModelProto:
    """Score threshold -> NonZero -> gather the boxes -> NonMaxSuppression -> gather the kept boxes."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["features"]),  # [1, 5, 6, 6]: 4 box coordinates + 1 score
        helper.make_node("Reshape", ["features", "flat_shape"], ["flat"]),  # [5, 36]
        helper.make_node("Transpose", ["flat"], ["rows"], perm=[1, 0]),  # [36, 5]
        helper.make_node("Gather", ["rows", "score_index"], ["scores"], axis=1),  # [36]
        helper.make_node("Slice", ["rows", "zero", "four", "one"], ["coords"]),  # [36, 4]
        helper.make_node("Greater", ["scores", "threshold"], ["mask"]),
        helper.make_node("NonZero", ["mask"], ["where"]),  # [1, K]
        helper.make_node("Squeeze", ["where", "zero"], ["kept"]),
        helper.make_node("Gather", ["coords", "kept"], ["boxes"], axis=0),  # [K, 4]
        helper.make_node("Gather", ["scores", "kept"], ["kept_scores"], axis=0),
        helper.make_node("Unsqueeze", ["boxes", "zero"], ["batch_boxes"]),
        helper.make_node("Unsqueeze", ["kept_scores", "zero_one"], ["batch_scores"]),
        helper.make_node("NonMaxSuppression", ["batch_boxes", "batch_scores", "max_out", "iou"], ["selected"]),
        helper.make_node("Gather", ["selected", "two"], ["box_ids"], axis=1),
        helper.make_node("Gather", ["boxes", "box_ids"], ["final_boxes"], axis=0),
        helper.make_node("Sigmoid", ["final_boxes"], ["y"]),
    ]
    rng = np.random.default_rng(4)
    inits = [
        numpy_helper.from_array(rng.standard_normal((5, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(np.array([5, 36], np.int64), "flat_shape"),
        numpy_helper.from_array(np.array(4, np.int64), "score_index"),
        numpy_helper.from_array(np.array([0], np.int64), "zero"),
        numpy_helper.from_array(np.array([0, 1], np.int64), "zero_one"),
        numpy_helper.from_array(np.array([1], np.int64), "one"),
        numpy_helper.from_array(np.array([4], np.int64), "four"),
        numpy_helper.from_array(np.array(2, np.int64), "two"),
        numpy_helper.from_array(np.array(0.0, np.float32), "threshold"),
        numpy_helper.from_array(np.array([10], np.int64), "max_out"),
        numpy_helper.from_array(np.array([0.3], np.float32), "iou"),
    ]
    return _model(nodes, [_value("x", [1, 3, 8, 8])], [_value("y", ["K", 4])], inits)


def test_value_dependent_model_runs_as_jitted_parts_and_matches_onnxruntime():
    model = _detector_tail()
    generated = generate_module(model)
    assert generated.value_dependent_nodes == ("NonZero", "NonMaxSuppression")
    assert "_segment(" in generated.source and "def forward_part_1(params" in generated.source
    compile(generated.source, "<check>", "exec")
    rng = np.random.default_rng(5)
    for seed in range(3):  # different inputs select different numbers of boxes
        x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32) * (seed + 1)
        expected = run_onnx(model, [x])[0]
        got = generated.forward(generated.params, x)
        assert got.shape == expected.shape and expected.shape[0] > 0
        np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-6)


def _compiles_during(fn) -> list[str]:
    """The "Compiling ..." messages JAX logs while ``fn`` runs."""
    import logging

    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    handler = Collect()
    logger = logging.getLogger("jax")
    logger.addHandler(handler)
    try:
        with jax.log_compiles(True):
            fn()
    finally:
        logger.removeHandler(handler)
    return [m for m in messages if "Compiling" in m]


def test_value_dependent_parts_compile_once_per_shape():
    model = _detector_tail()
    forward, params = wb.to_jax(model)
    x = np.random.default_rng(6).standard_normal((1, 3, 8, 8)).astype(np.float32)
    forward(params, x)
    compiles = _compiles_during(lambda: forward(params, x))
    assert not compiles, compiles


def _per_class_steps() -> onnx.ModelProto:
    """The same value-dependent step for two score maps, as a detector repeats it per class."""
    nodes = [helper.make_node("Greater", [name, "threshold"], [f"{name}_mask"]) for name in ("a", "b")]
    for name in ("a", "b"):
        nodes += [
            helper.make_node("NonZero", [f"{name}_mask"], [f"{name}_where"]),  # [2, K]
            helper.make_node("Transpose", [f"{name}_where"], [f"{name}_index"], perm=[1, 0]),
            helper.make_node("GatherND", [name, f"{name}_index"], [f"{name}_kept"]),
            helper.make_node("Sigmoid", [f"{name}_kept"], [f"{name}_y"]),
        ]
    inits = [numpy_helper.from_array(np.array(0.0, np.float32), "threshold")]
    return _model(nodes, [_value("a", [6, 5]), _value("b", [6, 5])], [_value("a_y", ["K"]), _value("b_y", ["L"])], inits)


def test_repeated_steps_share_one_part_and_its_compilation():
    model = _per_class_steps()
    generated = generate_module(model)
    # part 1: both masks; then one function for the two identical steps after each NonZero
    assert generated.source.count("\ndef forward_part_") == 2, generated.source
    assert generated.source.count("_segment(forward_part_2,") == 2
    assert generated.source.count("# nodes Transpose to Sigmoid: the code of forward_part_2") == 1
    rng = np.random.default_rng(8)
    a, b = rng.standard_normal((2, 6, 5)).astype(np.float32)
    for first, second in [(a, b), (a, -a)]:  # other counts of positives in the two maps
        expected = run_onnx(model, [first, second])
        got = generated.forward(generated.params, first, second)
        for want, have in zip(expected, got):
            np.testing.assert_allclose(np.asarray(have), want, rtol=1e-6, atol=1e-7)
    # as many positives in both maps: the shared part compiles for the first step and serves the second
    forward, params = wb.to_jax(model)
    compiles = _compiles_during(lambda: forward(params, a, a[:, ::-1].copy()))
    assert len([m for m in compiles if "_segment_run" in m]) == 2, compiles  # part 1 and the shared step


def _per_class_columns(classes: int, with_top_k: bool) -> onnx.ModelProto:
    """A detector's per-class loop: column c of the scores, its positive entries (NonZero), their sigmoid;
    the steps of different classes differ only in the class index (and with ``with_top_k`` in a TopK's k,
    which must stay concrete)."""
    nodes, inits, outputs = [], [numpy_helper.from_array(np.array(0.0, np.float32), "zero_f"),
                                 numpy_helper.from_array(np.array([0], np.int64), "axis0")], []
    for c in range(classes):
        inits.append(numpy_helper.from_array(np.array(c, np.int64), f"class_{c}"))
        nodes += [
            helper.make_node("Gather", ["scores", f"class_{c}"], [f"column_{c}"], axis=1),
            helper.make_node("Greater", [f"column_{c}", "zero_f"], [f"mask_{c}"]),
            helper.make_node("NonZero", [f"mask_{c}"], [f"where_{c}"]),
            helper.make_node("Squeeze", [f"where_{c}", "axis0"], [f"rows_{c}"]),
            helper.make_node("Gather", [f"column_{c}", f"rows_{c}"], [f"kept_{c}"], axis=0),
        ]
        last = f"kept_{c}"
        if with_top_k:
            inits.append(numpy_helper.from_array(np.array([c + 1], np.int64), f"k_{c}"))
            nodes.append(helper.make_node("TopK", [last, f"k_{c}"], [f"top_{c}", f"top_index_{c}"]))
            last = f"top_{c}"
        nodes.append(helper.make_node("Sigmoid", [last], [f"y_{c}"]))
        outputs.append(_value(f"y_{c}", [f"K{c}"]))
    return _model(nodes, [_value("scores", [8, classes])], outputs, inits)


def test_steps_differing_in_a_class_index_share_one_traced_function():
    model = _per_class_columns(4, with_top_k=False)
    source = generate_module(model).source
    assert source.count("_segment_shared(forward_part") == 2, source  # classes 2 and 3 (1 is the first of the kind)
    rng = np.random.default_rng(9)
    column = rng.standard_normal(8).astype(np.float32)
    scores = np.stack([np.roll(column, c) for c in range(4)], axis=1)  # as many positives in every column
    forward, params = wb.to_jax(model)
    compiles = _compiles_during(lambda: forward(params, scores))
    expected = run_onnx(model, [scores])
    for want, have in zip(expected, forward(params, scores)):
        np.testing.assert_allclose(np.asarray(have), want, rtol=1e-6, atol=1e-7)
    # part 1, the step of class 1, one compilation for classes 2 and 3, the last step
    assert len([m for m in compiles if "_segment_run" in m]) == 4, compiles
    shared = [fn for name, fn in forward.__globals__.items() if name.startswith("forward_part_") and name.endswith("_shared")]
    assert len(shared) == 1 and not shared[0].__dict__.get("needs_concrete_scalars")


def test_a_shared_step_whose_integer_must_stay_concrete_runs_its_own_code():
    model = _per_class_columns(4, with_top_k=True)  # TopK's k differs per class: not traceable
    source = generate_module(model).source
    assert "_segment_shared(forward_part" in source
    scores = np.random.default_rng(10).standard_normal((8, 4)).astype(np.float32) + 1.0
    expected = run_onnx(model, [scores])
    forward, params = wb.to_jax(model)
    for want, have in zip(expected, forward(params, scores)):
        np.testing.assert_allclose(np.asarray(have), want, rtol=1e-6, atol=1e-7)
    shared = [fn for name, fn in forward.__globals__.items() if name.startswith("forward_part_") and name.endswith("_shared")]
    assert len(shared) == 1 and shared[0].__dict__.get("needs_concrete_scalars") is True


def test_whole_function_jit_names_the_value_dependent_node():
    forward, params = wb.to_jax(_detector_tail())
    x = np.zeros((1, 3, 8, 8), np.float32)
    with pytest.raises(jax.errors.ConcretizationTypeError):
        jax.jit(forward)(params, x)


def test_backend_runs_value_dependent_models_without_a_whole_jit():
    from workbench.onnx_to_jax.backend import Backend

    rep = Backend.prepare(_detector_tail())
    assert rep.jit is False
    x = np.random.default_rng(7).standard_normal((1, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(rep.run([x])[0], run_onnx(_detector_tail(), [x])[0], rtol=1e-5, atol=1e-6)


def _nms_model(boxes: int, classes: int, max_out: int = 40, iou: float = 0.45, floor: float = 0.05) -> onnx.ModelProto:
    node = helper.make_node("NonMaxSuppression", ["boxes", "scores", "max_out", "iou", "floor"], ["selected"])
    graph = helper.make_graph(
        [node], "nms",
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, boxes, 4]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, classes, boxes])],
        [helper.make_tensor_value_info("selected", TensorProto.INT64, None)],
        initializer=[numpy_helper.from_array(np.array([max_out], np.int64), "max_out"),
                     numpy_helper.from_array(np.array([iou], np.float32), "iou"),
                     numpy_helper.from_array(np.array([floor], np.float32), "floor")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _clustered_boxes(rng: np.random.Generator, count: int) -> np.ndarray:
    """Boxes around a few centres, so that many overlap (and many survive: the greedy order matters)."""
    centres = rng.uniform(0, 300, (12, 2))[rng.integers(0, 12, count)] + rng.normal(0, 15, (count, 2))
    sizes = rng.uniform(10, 60, (count, 2))
    corners = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1)
    return corners[None, :, [1, 0, 3, 2]].astype(np.float32)  # (y0, x0, y1, x1)


def test_host_non_max_suppression_matches_onnxruntime_on_many_overlapping_boxes():
    rng = np.random.default_rng(7)
    boxes, scores = _clustered_boxes(rng, 3000), rng.uniform(0, 1, (1, 3, 3000)).astype(np.float32)
    model = _nms_model(3000, 3)
    generated = generate_module(model)
    got = np.asarray(generated.forward(generated.params, boxes, scores))
    expected = run_onnx(model, [boxes, scores])[0]
    assert len(expected) > 60  # several classes fill up to their limit
    np.testing.assert_array_equal(got, expected)


def test_host_non_max_suppression_memory_grows_with_the_boxes_not_their_square():
    # A detector hands NMS tens of thousands of candidates (SSDlite: ~27,000); an N x N overlap matrix
    # of 30,000 boxes is 3.6 GB per float32 temporary (the run that was OOM-killed at 10 GB).
    import tracemalloc

    rng = np.random.default_rng(8)
    count = 30_000
    boxes, scores = _clustered_boxes(rng, count), rng.uniform(0, 1, (1, 2, count)).astype(np.float32)
    generated = generate_module(_nms_model(count, 2))
    tracemalloc.start()
    try:
        got = np.asarray(generated.forward(generated.params, boxes, scores))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got.shape == (80, 3)
    assert peak < 64 * 2**20, f"NonMaxSuppression of {count} boxes peaked at {peak / 2**20:.0f} MB"


def _batched_candidates(rng: np.random.Generator, count: int, classes: int, spacing: float = 400.0) -> np.ndarray:
    """A detector's batched NMS input: boxes of all sizes over a 320 px image, each class's boxes moved
    by ``spacing`` (torchvision's batched_nms: more than the largest coordinate), so mostly only boxes of
    a class overlap, and most boxes survive."""
    offset = spacing * rng.integers(0, classes, count)
    centres = rng.uniform(0, 320, (count, 2))
    sizes = rng.uniform(5, 120, (count, 2))
    corners = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1) + offset[:, None]
    return corners[None, :, [1, 0, 3, 2]].astype(np.float32)


def _host_nms(generated, boxes, scores, **options) -> np.ndarray:
    """The generated module's host NonMaxSuppression on the model's thresholds (max_out, iou, floor)."""
    ns, params = generated.forward.__globals__, generated.params
    limit = int(np.asarray(params["max_out"])[0])
    return ns["_nms_host"](boxes, scores, limit, np.asarray(params["iou"])[0], np.asarray(params["floor"])[0],
                           False, **options)


def test_host_non_max_suppression_from_overlapping_pairs_matches_onnxruntime():
    """Thousands of candidates of which most are kept (a detector's batched NMS: SSDlite keeps 16,566 of
    27,000): resolved from the pairs that overlap, the same boxes in the same order as onnxruntime and as
    the greedy walk (pair_budget=0 forces the walk)."""
    rng = np.random.default_rng(9)
    count = 6000
    boxes, scores = _batched_candidates(rng, count, 20), rng.uniform(0, 1, (1, 1, count)).astype(np.float32)
    model = _nms_model(count, 1, max_out=2**62, iou=0.5, floor=0.0)
    generated = generate_module(model)
    expected = run_onnx(model, [boxes, scores])[0]
    assert 2000 < len(expected) < count - 1000  # most kept, many suppressed
    np.testing.assert_array_equal(np.asarray(generated.forward(generated.params, boxes, scores)), expected)
    np.testing.assert_array_equal(_host_nms(generated, boxes, scores, pair_budget=0), expected)


@pytest.mark.parametrize("pair_budget", [60_000, 1_000])
def test_host_non_max_suppression_over_the_pair_budget_goes_class_by_class(pair_budget):
    """More overlapping pairs than the budget in all, but few within each class's x range (torchvision's
    batched NMS moves the classes apart; Mask R-CNN's 90 classes took 29 s in the greedy walk): the
    classes are resolved a few at a time from their pairs (60,000), or each by the walk when one class
    alone is over the budget (1,000). Same boxes in the same order as onnxruntime."""
    rng = np.random.default_rng(13)
    count = 6000
    # 1,000 px apart: no box reaches into the next class's x range (312,000 pairs in all, 11,500-19,800 a class)
    boxes = _batched_candidates(rng, count, 20, spacing=1000.0)
    scores = rng.uniform(0, 1, (1, 1, count)).astype(np.float32)
    model = _nms_model(count, 1, max_out=2**62, iou=0.5, floor=0.0)
    generated = generate_module(model)
    expected = run_onnx(model, [boxes, scores])[0]
    ns = generated.forward.__globals__
    grouped, calls = ns["_nms_by_x_groups"], []
    ns["_nms_by_x_groups"] = lambda *args: calls.append(args[-1]) or grouped(*args)
    try:
        np.testing.assert_array_equal(_host_nms(generated, boxes, scores, pair_budget=pair_budget), expected)
    finally:
        ns["_nms_by_x_groups"] = grouped
    assert calls == [pair_budget]


def test_host_non_max_suppression_resolves_long_chains_of_overlaps():
    """Boxes in a row, each overlapping the next, scores falling along the row: the 1st, 3rd, 5th... are
    kept, and each round over the pairs settles only the next two boxes, so the rounds run out and the
    rest is settled box by box (_nms_resolve). Same boxes as onnxruntime and the greedy walk."""
    count = 300
    left = 8.0 * np.arange(count)
    corners = np.stack([np.zeros(count), left, np.full(count, 10.0), left + 10], axis=1)  # (y0, x0, y1, x1)
    boxes = corners[None].astype(np.float32)
    scores = np.linspace(1, 0.5, count, dtype=np.float32)[None, None]
    model = _nms_model(count, 1, max_out=1000, iou=0.1, floor=0.0)
    generated = generate_module(model)
    expected = run_onnx(model, [boxes, scores])[0]
    np.testing.assert_array_equal(expected[:, 2], np.arange(0, count, 2))
    np.testing.assert_array_equal(np.asarray(generated.forward(generated.params, boxes, scores)), expected)
    np.testing.assert_array_equal(_host_nms(generated, boxes, scores, pair_budget=0), expected)


def test_host_non_max_suppression_from_pairs_over_batches_classes_and_centre_boxes():
    """Two images, three classes, boxes given as centres and sizes, a score floor: the pairs form keeps
    the boxes onnxruntime keeps, as does the walk."""
    rng = np.random.default_rng(10)
    count = 1500
    node = helper.make_node("NonMaxSuppression", ["boxes", "scores", "max_out", "iou", "floor"], ["selected"],
                            center_point_box=1)
    graph = helper.make_graph(
        [node], "nms",
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [2, count, 4]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, [2, 3, count])],
        [helper.make_tensor_value_info("selected", TensorProto.INT64, [None, 3])],
        initializer=[numpy_helper.from_array(np.array([10_000], np.int64), "max_out"),
                     numpy_helper.from_array(np.array([0.3], np.float32), "iou"),
                     numpy_helper.from_array(np.array([0.2], np.float32), "floor")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    centres, sizes = rng.uniform(0, 640, (2, count, 2)), rng.uniform(4, 80, (2, count, 2))
    boxes = np.concatenate([centres, sizes], axis=2).astype(np.float32)  # (x_c, y_c, w, h)
    scores = rng.uniform(0, 1, (2, 3, count)).astype(np.float32)
    generated = generate_module(model)
    expected = run_onnx(model, [boxes, scores])[0]
    assert len(expected) > 3000 and set(expected[:, 0]) == {0, 1} and set(expected[:, 1]) == {0, 1, 2}
    np.testing.assert_array_equal(np.asarray(generated.forward(generated.params, boxes, scores)), expected)
    host = generated.forward.__globals__["_nms_host"]
    walked = host(boxes, scores, 10_000, np.float32(0.3), np.float32(0.2), True, pair_budget=-1)
    np.testing.assert_array_equal(walked, expected)


def _batched_nms_tail() -> onnx.ModelProto:
    """torchvision's detector tail: scores over a threshold (NonZero), TopK with k = min(5, count) (shape
    arithmetic on a count known only at run time), then the batched NMS inside an ``If`` on an empty
    input: the boxes of each label moved apart by label x (largest coordinate + 1)."""
    i64 = TensorProto.INT64
    else_nodes = [
        helper.make_node("ReduceMax", ["top_boxes"], ["largest"], keepdims=0),
        helper.make_node("Cast", ["top_labels"], ["labels_f"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["largest", "one_f"], ["spread"]),
        helper.make_node("Mul", ["labels_f", "spread"], ["offsets"]),
        helper.make_node("Unsqueeze", ["offsets", "axis1"], ["offsets_2d"]),
        helper.make_node("Add", ["top_boxes", "offsets_2d"], ["moved"]),
        helper.make_node("Unsqueeze", ["moved", "axis0"], ["batch_boxes"]),
        helper.make_node("Unsqueeze", ["top_scores", "axes01"], ["batch_scores"]),
        helper.make_node("NonMaxSuppression", ["batch_boxes", "batch_scores", "max_out", "iou"], ["selected"]),
        helper.make_node("Gather", ["selected", "two"], ["column"], axis=1),
        helper.make_node("Squeeze", ["column", "axis1"], ["keep"]),
    ]
    empty = numpy_helper.from_array(np.zeros(0, np.int64), "none")
    branches = {
        "then_branch": helper.make_graph([helper.make_node("Identity", ["none"], ["keep_then"])], "then", [],
                                         [_value("keep_then", [0], i64)], initializer=[empty]),
        "else_branch": helper.make_graph(else_nodes, "else", [], [_value("keep", ["M"], i64)],
                                         value_info=[_value("largest", [])]),
    }
    nodes = [
        helper.make_node("Greater", ["scores", "threshold"], ["mask"]),
        helper.make_node("NonZero", ["mask"], ["where"]),
        helper.make_node("Squeeze", ["where", "axis0"], ["rows"]),
        helper.make_node("Gather", ["scores", "rows"], ["kept_scores"], axis=0),
        helper.make_node("Gather", ["boxes", "rows"], ["kept_boxes"], axis=0),
        helper.make_node("Gather", ["labels", "rows"], ["kept_labels"], axis=0),
        helper.make_node("Shape", ["kept_scores"], ["count_shape"]),
        helper.make_node("Gather", ["count_shape", "zero_scalar"], ["count"], axis=0),
        helper.make_node("Unsqueeze", ["count", "axis0"], ["count_1d"]),
        helper.make_node("Concat", ["max_k", "count_1d"], ["candidates"], axis=0),
        helper.make_node("ReduceMin", ["candidates"], ["k_scalar"], keepdims=0),
        helper.make_node("Reshape", ["k_scalar", "shape_1"], ["k"]),
        helper.make_node("TopK", ["kept_scores", "k"], ["top_scores", "top_index"]),
        helper.make_node("Gather", ["kept_boxes", "top_index"], ["top_boxes"], axis=0),
        helper.make_node("Gather", ["kept_labels", "top_index"], ["top_labels"], axis=0),
        helper.make_node("Size", ["top_boxes"], ["size"]),
        helper.make_node("Equal", ["size", "zero_scalar"], ["is_empty"]),
        helper.make_node("If", ["is_empty"], ["keep_final"], **branches),
        helper.make_node("Gather", ["top_boxes", "keep_final"], ["final_boxes"], axis=0),
        helper.make_node("Gather", ["top_scores", "keep_final"], ["final_scores"], axis=0),
    ]
    inits = [
        numpy_helper.from_array(np.array(0.5, np.float32), "threshold"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one_f"),
        numpy_helper.from_array(np.array(0, np.int64), "zero_scalar"),
        numpy_helper.from_array(np.array([2], np.int64), "two"),
        numpy_helper.from_array(np.array([0], np.int64), "axis0"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array([0, 1], np.int64), "axes01"),
        numpy_helper.from_array(np.array([5], np.int64), "max_k"),
        numpy_helper.from_array(np.array([1], np.int64), "shape_1"),
        numpy_helper.from_array(np.array([100], np.int64), "max_out"),
        numpy_helper.from_array(np.array([0.5], np.float32), "iou"),
    ]
    inputs = [_value("scores", [12]), _value("boxes", [12, 4]), _value("labels", [12], i64)]
    return _model(nodes, inputs, [_value("final_boxes", ["M", 4]), _value("final_scores", ["M"])], inits)


def test_shape_arithmetic_and_host_branches_of_value_dependent_models_run_in_numpy():
    # k = min(5, count) inside a part and the batched NMS's offsets inside the If run as numpy calls
    # (host_shapes.py): each would otherwise be one XLA compile of its own on the first call
    model = _batched_nms_tail()
    generated = generate_module(model)
    assert "_on_host(_in_numpy(_reduce), _reduce, 'min'" in generated.source  # the shape arithmetic in a part
    assert "_on_host(_in_numpy(_reduce), _reduce, 'max'" in generated.source  # the If's branch on the host
    rng = np.random.default_rng(11)
    for count in (9, 3, 0):  # TopK's k from the count (5, then fewer), then no box at all: the If's other branch
        scores = rng.permutation(np.linspace(0.05, 0.95, 12)).astype(np.float32)
        scores[np.argsort(scores)[: 12 - count]] *= 0.1  # count scores over the threshold
        corners = rng.uniform(0, 10, (12, 2)).astype(np.float32)
        boxes = np.concatenate([corners, corners + rng.uniform(1, 4, (12, 2)).astype(np.float32)], axis=1)
        labels = rng.integers(0, 3, 12).astype(np.int64)
        forward, params = wb.to_jax(model)
        compiles = _compiles_during(lambda: forward(params, scores, boxes, labels))
        # only the jitted parts compile: no eager operation on the values between them (jit(<lambda>) is
        # _xla_accepts asking XLA once per process whether it knows a compiler option)
        compiles = [m for m in compiles if "jit(<lambda>)" not in m]
        if count:  # (with no box the If returns an empty constant, which JAX stages once)
            assert compiles and all("_segment_run" in m for m in compiles), "\n".join(m[:60] for m in compiles)
        expected = run_onnx(model, [scores, boxes, labels])
        got = forward(params, scores, boxes, labels)
        for want, have in zip(expected, got):
            assert np.shape(have) == want.shape
            np.testing.assert_array_equal(np.asarray(have), want)


def test_models_without_value_dependent_nodes_keep_their_jax_shape_arithmetic():
    # a symbolic batch: Reshape to Concat(Shape(x)[0:1], [6]) is shape arithmetic under jax.jit, left as JAX
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["batch"], axis=0),
        helper.make_node("Unsqueeze", ["batch", "axis0"], ["batch_1d"]),
        helper.make_node("Concat", ["batch_1d", "six"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"]),
    ]
    inits = [numpy_helper.from_array(np.array(0, np.int64), "zero"),
             numpy_helper.from_array(np.array([0], np.int64), "axis0"),
             numpy_helper.from_array(np.array([6], np.int64), "six")]
    model = _model(nodes, [_value("x", ["B", 2, 3])], [_value("y", ["B", 6])], inits)
    source = generate_module(model).source
    assert "ensure_compile_time_eval" in source and "_on_host" not in source
    _assert_matches(model, [np.arange(24, dtype=np.float32).reshape(4, 2, 3)], jit=True)


# each runtime helper with a numpy form, on arguments as generated code passes them (host_shapes.py)
_HOST_HELPER_CASES = [
    ("_unsqueeze", (np.arange(6, dtype=np.int64).reshape(2, 3), (0, -1))),
    ("_unsqueeze", (np.array([True, False]), (1,))),
    ("_squeeze", (np.ones((1, 3, 1), np.float32), (0, -1))),
    ("_squeeze", (np.ones((1, 3, 1), np.int64), None)),
    ("_constant_of_shape", (np.array([2, 3], np.int64), np.array([7], np.int64))),
    ("_constant_of_shape", (np.array([0], np.int64), np.array([1.5], np.float32))),
    ("_reduce", ("min", np.array([[3.5, -1.0], [2.0, 8.0]], np.float32), np.array([1], np.int64), False, False)),
    ("_reduce", ("max", np.array([4, 9, 2], np.int64), None, True, False)),
    ("_reduce", ("max", np.zeros((0,), np.bool_), None, False, False)),  # over nothing: the identity
    ("_reduce", ("min", np.zeros((0, 2), np.int64), (0,), False, False)),
    ("_reduce", ("sum", np.arange(12, dtype=np.int64).reshape(3, 4), (0, 1), False, False)),
    ("_reduce", ("prod", np.arange(1, 7, dtype=np.int32).reshape(2, 3), (-1,), True, False)),
    ("_reduce", ("sum", np.arange(4, dtype=np.int64), (), False, True)),  # no axes, noop: x itself
]


@pytest.mark.parametrize(("name", "args"), _HOST_HELPER_CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(_HOST_HELPER_CASES)])
def test_runtime_helpers_run_in_numpy_as_they_do_in_jax(name, args):
    # _in_numpy runs a helper's own body with jnp naming numpy: numpy arrays out (no XLA), JAX's values and types
    from workbench.onnx_to_jax.helpers import registered_helpers
    from workbench.onnx_to_jax.host_shapes import _in_numpy

    helper_fn = registered_helpers()[name]
    with jax.enable_x64(True):
        expected = helper_fn(*args)
        got = _in_numpy(helper_fn)(*args)
    assert isinstance(got, (np.ndarray, np.generic)) and not isinstance(got, jax.Array)  # a full reduction: a scalar
    assert got.dtype == np.asarray(expected).dtype and got.shape == np.shape(expected)
    np.testing.assert_array_equal(got, np.asarray(expected))


def test_helpers_with_a_numpy_form_call_no_other_helper():
    # _in_numpy rebinds jnp in the helper's own names only: a helper it calls would still run JAX's code
    from workbench.onnx_to_jax.helpers import registered_helpers
    from workbench.onnx_to_jax.host_shapes import _HOST_HELPERS

    helpers = set(registered_helpers())
    for fn in _HOST_HELPERS:
        assert not (set(fn.__code__.co_names) & helpers), fn.__name__


def test_a_repeated_nonzero_of_the_same_mask_runs_once():
    # torchvision asks twice for a mask's positions (torch.where, then nonzero): the second NonZero reuses
    # the first's result, so the steps around it stay one jitted part
    nodes = [
        helper.make_node("Greater", ["scores", "threshold"], ["mask"]),
        helper.make_node("NonZero", ["mask"], ["where"]),
        helper.make_node("Transpose", ["where"], ["index"], perm=[1, 0]),
        helper.make_node("GatherND", ["scores", "index"], ["kept"]),
        helper.make_node("NonZero", ["mask"], ["where_again"]),
        helper.make_node("Squeeze", ["where_again", "axis0"], ["rows"]),
        helper.make_node("Cast", ["rows"], ["rows_f"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["kept", "rows_f"], ["y"]),
    ]
    inits = [numpy_helper.from_array(np.array(0.0, np.float32), "threshold"),
             numpy_helper.from_array(np.array([0], np.int64), "axis0")]
    model = _model(nodes, [_value("scores", [10])], [_value("y", ["K"])], inits)
    generated = generate_module(model)
    assert generated.value_dependent_nodes == ("NonZero",), generated.value_dependent_nodes
    assert generated.source.count("_non_zero(") == 2  # the call and the helper's definition
    assert generated.source.count("_segment(forward_part") == 2  # the mask, then everything after the NonZero
    scores = np.random.default_rng(12).standard_normal(10).astype(np.float32)
    _assert_matches(model, [scores])


def _per_box_loop(filled: bool) -> onnx.ModelProto:
    """torchvision's mask pasting: after a NonZero, a Loop over the kept boxes reads each box's integer
    corners (Gather of a row, then Gather of one coordinate) and returns each box's width; ``filled``:
    counted from a ConstantOfShape of that width (a shape from values: the Loop runs between the parts)."""
    i64 = TensorProto.INT64
    count = [helper.make_node("ConstantOfShape", ["width_1d"], ["ones"],
                              value=numpy_helper.from_array(np.ones(1, np.int64))),
             helper.make_node("ReduceSum", ["ones"], ["result"], keepdims=1)] if filled else [
             helper.make_node("Identity", ["width_1d"], ["result"])]
    body = helper.make_graph(
        [helper.make_node("Gather", ["corners", "i"], ["row"], axis=0),
         helper.make_node("Gather", ["row", "two"], ["right"], axis=0),
         helper.make_node("Gather", ["row", "zero"], ["left"], axis=0),
         helper.make_node("Sub", ["right", "left"], ["width"]),
         helper.make_node("Unsqueeze", ["width", "axis0"], ["width_1d"]),
         *count,
         helper.make_node("Identity", ["cond"], ["cond_out"])],
        "per_box", [_value("i", [], i64), _value("cond", [], TensorProto.BOOL)],
        [_value("cond_out", [], TensorProto.BOOL), _value("result", [1], i64)],
    )
    nodes = [
        helper.make_node("Greater", ["scores", "threshold"], ["mask"]),
        helper.make_node("NonZero", ["mask"], ["where"]),
        helper.make_node("Squeeze", ["where", "axis0"], ["rows"]),
        helper.make_node("Gather", ["boxes", "rows"], ["kept"], axis=0),
        helper.make_node("Cast", ["kept"], ["corners"], to=i64),
        helper.make_node("Shape", ["corners"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["count"], axis=0),
        helper.make_node("Loop", ["count", "true"], ["widths"], body=body),
    ]
    inits = [
        numpy_helper.from_array(np.array(0.5, np.float32), "threshold"),
        numpy_helper.from_array(np.array(0, np.int64), "zero"),
        numpy_helper.from_array(np.array(2, np.int64), "two"),
        numpy_helper.from_array(np.array([0], np.int64), "axis0"),
        numpy_helper.from_array(np.array(True), "true"),
    ]
    return _model(nodes, [_value("scores", [6]), _value("boxes", [6, 4])], [_value("widths", ["M", 1], i64)], inits)


@pytest.mark.parametrize("filled", [False, True])
def test_per_box_loops_after_a_nonzero_match_onnxruntime(filled):
    # filled=False: the Loop sits in a jitted part, and its body passes the condition through, traced
    # there (the eager loop read it back with np.asarray and failed). filled=True: the Loop runs between
    # the parts, its body's coordinate Gather as numpy's take on the rows JAX gathered, which handed the
    # JAX array to its own .take(mode='raise') and failed (Mask R-CNN, legacy export)
    model = _per_box_loop(filled)
    if filled:
        assert "_on_host(np.take, jnp.take, row" in generate_module(model).source
    scores = np.array([0.9, 0.1, 0.7, 0.8, 0.2, 0.6], np.float32)
    boxes = np.random.default_rng(5).uniform(1, 20, (6, 4)).astype(np.float32)
    boxes[:, 2:] += boxes[:, :2]  # right, bottom past left, top: positive widths
    forward, params = wb.to_jax(model)
    (expected,) = run_onnx(model, [scores, boxes])
    got = np.asarray(forward(params, scores, boxes))
    assert expected.shape == (4, 1)
    np.testing.assert_array_equal(got, expected)


def test_jax_jit_of_a_value_dependent_model_says_to_call_forward_directly():
    """Was: JAX's bare 'The size argument of jnp.nonzero must be statically specified' from <workbench-guard>, for
    jax.jit(forward) as the README suggests for inference. JAX's error type stays (callers catch it to run eagerly);
    a note names the nodes and what to do."""
    model = _model([helper.make_node("Greater", ["x", "half"], ["mask"]), helper.make_node("NonZero", ["mask"], ["y"], name="where_big")],
                   [_value("x", [4, 5])], [_value("y", [2, None], TensorProto.INT64)],
                   [numpy_helper.from_array(np.array(0.5, np.float32), "half")])  # fmt: skip
    x = np.random.default_rng(0).random((4, 5)).astype(np.float32)
    forward, params = wb.to_jax(model)
    with pytest.raises(jax.errors.ConcretizationTypeError) as caught:
        jax.jit(forward)(params, x)
    (note,) = [text for text in caught.value.__notes__ if text.startswith("workbench:")]  # once, not per guard
    assert note.startswith("workbench: <ModelProto> has nodes whose output shapes depend on the input values ('where_big';")
    assert "Call forward(params, ...) directly" in note
    np.testing.assert_array_equal(np.asarray(forward(params, x)), run_onnx(model, [x])[0])  # as the note says
