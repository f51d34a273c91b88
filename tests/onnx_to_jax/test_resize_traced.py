"""Resize with a traced roi under jax.jit (traced scales stay host reads), and Slice windows with traced starts.

tf2onnx writes ``tf.image.crop_and_resize`` as one Resize per box inside a Loop, the roi sliced from the
boxes by the iteration number (``boxes[i:i + 1]``): under jax.jit both the Slice's start and the Resize's
roi are traced. Each model here is built with onnx.helper, its roi a graph input, so
``wb.jit_forward`` traces it; the generated module must name no value-dependent node (it is jitted whole)
and give onnxruntime's numbers, for every coordinate transformation mode, nearest mode, interpolation mode,
``exclude_outside``, ``extrapolation_value`` and ``antialias``.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import workbench as wb
from tests.support.harness import assert_generated_matches_onnxruntime, run_onnx
from workbench.onnx_to_jax.api import generate_module

COORDINATE_MODES = ["half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
                    "tf_half_pixel_for_nn", "tf_crop_and_resize"]
NEAREST_MODES = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]
# boxes (y1, x1, y2, x2) in the input's [0, 1] frame: inside, a point, reaching outside, flipped
BOXES = [(0.1, 0.2, 0.7, 0.9), (0.5, 0.4, 0.6, 0.8), (-0.2, 0.3, 1.1, 0.6), (0.8, 0.9, 0.2, 0.1)]


def _model(nodes, inputs, outputs, *, opset: int, inits=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


def _value(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def _image(shape=(1, 2, 9, 11)) -> np.ndarray:
    return np.random.default_rng(7).normal(size=shape).astype(np.float32)


def _roi(box) -> np.ndarray:
    y1, x1, y2, x2 = box
    return np.array([0, 0, y1, x1, 1, 1, y2, x2], np.float32)


def _check_jitted(model: onnx.ModelProto, inputs: list[np.ndarray], *, atol: float) -> None:
    """No value-dependent node (the whole model is one jax.jit) and onnxruntime's outputs, eagerly and
    under ``wb.jit_forward`` with every input traced."""
    assert generate_module(model).value_dependent_nodes == ()
    assert_generated_matches_onnxruntime(model, inputs, rtol=1e-5, atol=atol)


def _resize_with_roi_input(sizes, *, opset=13, **attributes) -> onnx.ModelProto:
    node = helper.make_node("Resize", ["x", "roi", "", "sizes"], ["y"], **attributes)
    return _model([node], [_value("x", [1, 2, 9, 11]), _value("roi", [8])], [_value("y", sizes)], opset=opset,
                  inits=[numpy_helper.from_array(np.array(sizes, np.int64), "sizes")])


@pytest.mark.parametrize("box", BOXES)
@pytest.mark.parametrize(("mode", "nearest_mode"), [("nearest", m) for m in NEAREST_MODES]
                         + [("linear", "floor"), ("cubic", "floor")])
def test_crop_and_resize_with_a_traced_roi(mode, nearest_mode, box):
    model = _resize_with_roi_input([1, 2, 6, 4], mode=mode, nearest_mode=nearest_mode,
                                   coordinate_transformation_mode="tf_crop_and_resize", extrapolation_value=-3.5)
    _check_jitted(model, [_image(), _roi(box)], atol=1e-5)


@pytest.mark.parametrize("exclude_outside", [0, 1])
@pytest.mark.parametrize("cubic_coeff_a", [-0.75, -0.5])
def test_cubic_crop_with_a_traced_roi_and_exclude_outside(exclude_outside, cubic_coeff_a):
    model = _resize_with_roi_input([1, 2, 7, 5], mode="cubic", exclude_outside=exclude_outside,
                                   cubic_coeff_a=cubic_coeff_a, coordinate_transformation_mode="tf_crop_and_resize")
    _check_jitted(model, [_image(), _roi((-0.1, 0.0, 0.9, 1.05))], atol=1e-5)


# tf_half_pixel_for_nn (Resize-11's, which tf2onnx writes for nearest resizes only) with nearest alone: with
# linear and cubic onnxruntime 1.31 gives numbers that are neither (i + 0.5) / scale (the mode's text, which
# the reader computes) nor half_pixel's nor asymmetric's (1.3 off on values of spread 1), with a concrete roi
# as with a traced one
MODE_PAIRS = [(c, m) for c in COORDINATE_MODES for m in ("nearest", "linear", "cubic")
              if c != "tf_half_pixel_for_nn" or m == "nearest"]


@pytest.mark.parametrize("sizes", [[1, 2, 5, 17], [1, 2, 1, 4]])
@pytest.mark.parametrize(("coordinate_mode", "mode"), MODE_PAIRS)
def test_every_coordinate_mode_with_a_traced_roi(coordinate_mode, mode, sizes):
    """Every mode with the roi traced (only tf_crop_and_resize reads it: the others keep the numpy path),
    for down- and upsampling and an output of one row."""
    model = _resize_with_roi_input(sizes, opset=18 if coordinate_mode == "half_pixel_symmetric" else 13,
                                   mode=mode, coordinate_transformation_mode=coordinate_mode)
    _check_jitted(model, [_image(), _roi((0.2, 0.1, 0.8, 0.7))], atol=1e-5)


@pytest.mark.parametrize("mode", ["linear", "cubic"])
@pytest.mark.parametrize("coordinate_mode", ["half_pixel", "tf_crop_and_resize"])
def test_antialias_with_a_traced_roi(coordinate_mode, mode):
    model = _resize_with_roi_input([1, 2, 4, 3], opset=18, mode=mode, antialias=1,
                                   coordinate_transformation_mode=coordinate_mode)
    _check_jitted(model, [_image(), _roi((0.0, 0.1, 0.9, 1.0))], atol=1e-5)


# declared output shapes of a Resize whose scales are a graph input: absent, agreeing with the scales given
# below (9 x 11 -> 13 x 6), contradicting them (fuzz44's sweep: a mutated node-suite model ran to another shape
# under jit than onnxruntime's), and huge (2**31 rows aborted XLA while the declared shape was trusted)
DECLARED = {"unknown": ["n", "c", "h", "w"], "agrees": [1, 2, 13, 6], "contradicts": [1, 2, 4, 7],
            "huge": [1, 2, 2**31, 6]}


@pytest.mark.parametrize("declared", sorted(DECLARED))
@pytest.mark.parametrize(("mode", "antialias"), [("nearest", 0), ("linear", 0), ("cubic", 1)])
def test_traced_scales_are_read_on_the_host_whatever_the_file_declares(declared, mode, antialias):
    """Scales fix the output shape (floor(n * scale)), so traced ones make the node value-dependent: it runs
    on the given values, never on a shape the file declares for its output, and gives onnxruntime's numbers.
    ``wb.jit_forward`` still refuses a module with value-dependent nodes; ``forward`` runs its jit-able parts."""
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode=mode, antialias=antialias)
    model = helper.make_model(
        helper.make_graph([node], "g", [_value("x", [1, 2, 9, 11]), _value("scales", [4])],
                          [_value("y", DECLARED[declared])]),
        opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
    generated = generate_module(model)
    assert len(generated.value_dependent_nodes) == 1
    inputs = [_image(), np.array([1, 1, 1.5, 0.6], np.float32)]
    expected = run_onnx(model, inputs)[0]
    assert expected.shape == (1, 2, 13, 6)
    forward, params = wb.to_jax(model)
    got = np.asarray(forward(params, *inputs))
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def _boxes_loop(mode: str) -> onnx.ModelProto:
    """crop_and_resize as tf2onnx writes it: a Loop over the boxes whose body slices box i and its image
    (``Slice(boxes, i, i + 1)``), builds the roi with Concat and resizes with tf_crop_and_resize."""
    ints = lambda name, values: numpy_helper.from_array(np.array(values, np.int64), name)  # noqa: E731
    floats = lambda name, values: numpy_helper.from_array(np.array(values, np.float32), name)  # noqa: E731
    body = helper.make_graph(
        [helper.make_node("Add", ["i", "one"], ["next"]),
         helper.make_node("Slice", ["boxes", "i", "next", "zero"], ["box_row"]),
         helper.make_node("Reshape", ["box_row", "four"], ["box"]),
         helper.make_node("Slice", ["box", "zero", "two"], ["corner_lo"]),
         helper.make_node("Slice", ["box", "two", "four"], ["corner_hi"]),
         helper.make_node("Concat", ["zeros", "corner_lo", "ones", "corner_hi"], ["roi"], axis=0),
         helper.make_node("Slice", ["index", "i", "next"], ["image_index"]),
         helper.make_node("Add", ["image_index", "one"], ["image_end"]),
         helper.make_node("Slice", ["x", "image_index", "image_end", "zero"], ["image"]),
         helper.make_node("Resize", ["image", "roi", "", "sizes"], ["crop"], mode=mode,
                          coordinate_transformation_mode="tf_crop_and_resize", extrapolation_value=0.5),
         helper.make_node("Squeeze", ["crop", "zero"], ["crop_out"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body", [_value("i", [1], TensorProto.INT64), _value("cond_in", [], TensorProto.BOOL)],
        [_value("cond_out", [], TensorProto.BOOL), _value("crop_out", [2, 5, 7])],
        initializer=[ints("one", [1]), ints("zero", [0]), ints("two", [2]), ints("four", [4]),
                     floats("zeros", [0, 0]), floats("ones", [1, 1]), ints("sizes", [1, 2, 5, 7])])
    loop = helper.make_node("Loop", ["trips", "keep_going"], ["crops"], body=body)
    return _model([loop], [_value("x", [2, 2, 9, 11]), _value("boxes", [3, 4]),
                           _value("index", [3], TensorProto.INT64)],
                  [_value("crops", [3, 2, 5, 7])], opset=13,
                  inits=[ints("trips", 3), numpy_helper.from_array(np.array(True), "keep_going")])


@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
def test_boxes_in_a_loop_jit_whole(mode):
    boxes = np.array([BOXES[0], BOXES[2], BOXES[3]], np.float32)
    _check_jitted(_boxes_loop(mode), [_image((2, 2, 9, 11)), boxes, np.array([1, 0, 1], np.int64)], atol=1e-5)


@pytest.mark.parametrize("start", [0, 2, -3])
def test_slice_window_with_a_traced_start(start):
    """``Slice(x, s, s + 2)`` with ``s`` a graph input: a window of two rows wherever ``s`` points (a
    negative start counts from the end, as in ONNX)."""
    nodes = [helper.make_node("Add", ["s", "two"], ["e"]),
             helper.make_node("Slice", ["x", "s", "e", "axis"], ["y"])]
    model = _model(nodes, [_value("x", [5, 3]), _value("s", [1], TensorProto.INT64)], [_value("y", ["rows", 3])],
                   opset=13, inits=[numpy_helper.from_array(np.array([2], np.int64), "two"),
                                    numpy_helper.from_array(np.array([0], np.int64), "axis")])
    _check_jitted(model, [_image((5, 3)), np.array([start], np.int64)], atol=0)


def test_slice_window_past_the_end_is_exact_eagerly():
    """A start that runs the window past the end: ONNX returns the shorter slice; eagerly the reader does
    too (under jax.jit the window is moved back inside, the only static-shaped answer)."""
    nodes = [helper.make_node("Add", ["s", "two"], ["e"]),
             helper.make_node("Slice", ["x", "s", "e"], ["y"])]
    model = _model(nodes, [_value("x", [5, 3]), _value("s", [1], TensorProto.INT64)], [_value("y", ["rows", 3])],
                   opset=13, inits=[numpy_helper.from_array(np.array([2], np.int64), "two")])
    inputs = [_image((5, 3)), np.array([4], np.int64)]
    forward, params = wb.to_jax(model)
    want = run_onnx(model, inputs)[0]
    assert want.shape == (1, 3)
    np.testing.assert_array_equal(np.asarray(forward(params, *inputs)), want)


@pytest.mark.parametrize("coordinate_mode", COORDINATE_MODES)
@pytest.mark.parametrize(("n_in", "n_out", "scale"), [(96, 160, 160 / 96), (11, 25, 25 / 11), (16, 7, 0.45)])
def test_traced_coordinates_equal_the_numpy_ones_bit_for_bit(coordinate_mode, n_in, n_out, scale):
    """Nearest mode rounds the source coordinates, so under jax.jit they must be numpy's float32 values
    exactly (onnxruntime's): XLA turned a division by a broadcast scalar into a multiplication by its
    reciprocal, 1 ulp off on 52 of 160 coordinates of a 96 -> 160 crop and a tie moved at 6 * 10 / 24."""
    import jax
    import jax.numpy as jnp

    from workbench.onnx_to_jax.emitters.resize import _resize_source_coords

    want = _resize_source_coords(n_out, n_in, scale, coordinate_mode, 0.1, 0.9, np)
    traced = jax.jit(lambda s, a, b: _resize_source_coords(n_out, n_in, s, coordinate_mode, a, b, jnp))
    have = np.asarray(traced(np.float32(scale), np.float32(0.1), np.float32(0.9)))
    np.testing.assert_array_equal(have, want)


# align_corners with scales whose product with the input length is fractional (11 x 0.6 = 6.6 -> 6 columns):
# the spec's formula divides by length_resized, the resized tensor's length (6), as onnxruntime and PyTorch
# do; onnx's reference divides by the fractional 6.6 (onnx issue #2462: on purpose), so the node suite's
# test_resize_downsample_scales_{linear,cubic}_align_corners stay in expected_failures.py
@pytest.mark.parametrize("scales", [(1, 1, 0.6, 0.6), (1, 1, 0.8, 0.7), (1, 1, 1.5, 1.3)])
@pytest.mark.parametrize("mode", ["linear", "cubic"])
def test_align_corners_with_fractional_scaled_lengths_gives_onnxruntimes_numbers(mode, scales):
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode=mode,
                            coordinate_transformation_mode="align_corners")
    out = [1, 2, int(9 * scales[2]), int(11 * scales[3])]
    model = _model([node], [_value("x", [1, 2, 9, 11])], [_value("y", out)], opset=13,
                   inits=[numpy_helper.from_array(np.array(scales, np.float32), "scales")])
    assert_generated_matches_onnxruntime(model, [_image()], rtol=1e-5, atol=1e-5)
