"""Object-detection ops: NonMaxSuppression.

NonMaxSuppression follows the spec's greedy rule per (batch, class): boxes by
descending score (ties: lower box index first), optionally only those scoring
above ``score_threshold``, a box is kept when its IoU with every kept box is
at most ``iou_threshold``, at most ``max_output_boxes_per_class`` per class.
The suppression runs as a ``lax.fori_loop`` over the ranked boxes; the number
of selected boxes depends on the values, so the result is gathered eagerly
(the generated function is not ``jax.jit``-able when it contains this op).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from workbench.onnx_to_jax.context import NodeContext
from workbench.onnx_to_jax.registry import emitter, runtime_helper


@runtime_helper
def _box_corners(boxes, center_point_box):
    """(x_min, y_min, x_max, y_max) of [y1, x1, y2, x2] corners (any order) or [x_c, y_c, w, h] centers."""
    if center_point_box:
        x_c, y_c, w, h = (boxes[..., i] for i in range(4))
        return x_c - w / 2, y_c - h / 2, x_c + w / 2, y_c + h / 2
    y1, x1, y2, x2 = (boxes[..., i] for i in range(4))
    return jnp.minimum(x1, x2), jnp.minimum(y1, y2), jnp.maximum(x1, x2), jnp.maximum(y1, y2)


@runtime_helper
def _nms_host(boxes, scores, max_per_class, iou_threshold, score_threshold, center_point_box):
    """NonMaxSuppression on concrete arrays with numpy: the same arithmetic as the traced form below,
    without compiling anything (a detector calls it once per image and class level)."""
    boxes, scores = np.asarray(boxes), np.asarray(scores)
    if center_point_box:
        x_c, y_c, w, h = (boxes[..., i] for i in range(4))
        x0, y0, x1, y1 = x_c - w / 2, y_c - h / 2, x_c + w / 2, y_c + h / 2
    else:
        y_a, x_a, y_b, x_b = (boxes[..., i] for i in range(4))
        x0, y0, x1, y1 = np.minimum(x_a, x_b), np.minimum(y_a, y_b), np.maximum(x_a, x_b), np.maximum(y_a, y_b)
    # Greedy, one kept box at a time against the later boxes still alive: O(N) memory. (An N x N
    # overlap matrix took gigabytes on a detector's tens of thousands of candidates: SSDlite's run was
    # OOM-killed at 10 GB.) The candidates are gathered in score order once, so each step works on
    # contiguous slices. Same arithmetic as the traced form; the overlap test is symmetric, so clearing
    # what each kept box suppresses keeps exactly the boxes no earlier kept box suppresses.
    selected = []
    for b in range(scores.shape[0]):
        area = (x1[b] - x0[b]) * (y1[b] - y0[b])
        for c in range(scores.shape[1]):
            order = np.argsort(-scores[b, c], kind="stable")
            if score_threshold is not None:
                order = order[scores[b, c][order] > score_threshold]
            sx0, sy0, sx1, sy1, sarea = x0[b][order], y0[b][order], x1[b][order], y1[b][order], area[order]
            alive = np.ones(order.size, bool)
            kept: list[int] = []
            position = 0
            while len(kept) < max_per_class:
                ahead = np.flatnonzero(alive[position:])
                if ahead.size == 0:
                    break
                i = position + int(ahead[0])
                kept.append(int(order[i]))
                position = i + 1
                rest = slice(position, None)
                inter_w = np.minimum(sx1[rest], sx1[i]) - np.maximum(sx0[rest], sx0[i])
                inter_h = np.minimum(sy1[rest], sy1[i]) - np.maximum(sy0[rest], sy0[i])
                inter = inter_w * inter_h
                union = sarea[rest] + sarea[i] - inter
                overlapping = (inter_w > 0) & (inter_h > 0) & (sarea[rest] > 0) & (sarea[i] > 0) & (union > 0)
                with np.errstate(divide="ignore", invalid="ignore"):
                    suppressed = overlapping & (inter / np.where(union > 0, union, 1) > iou_threshold)
                alive[rest] &= ~suppressed
            selected.extend((b, c, box) for box in kept)
    return np.asarray(selected, np.int64).reshape(-1, 3)


@runtime_helper
def _non_max_suppression(boxes, scores, max_per_class, iou_threshold, score_threshold, center_point_box):
    max_per_class = 0 if max_per_class is None or np.size(max_per_class) == 0 else int(
        np.asarray(max_per_class).reshape(-1)[0])
    max_per_class = max(max_per_class, 0)
    if not any(isinstance(v, jax.core.Tracer) for v in (boxes, scores, iou_threshold, score_threshold)):
        iou = 0.0 if iou_threshold is None or np.size(iou_threshold) == 0 else np.asarray(iou_threshold).reshape(-1)[0]
        floor = None if score_threshold is None or np.size(score_threshold) == 0 else np.asarray(
            score_threshold).reshape(-1)[0]
        return _nms_host(boxes, scores, max_per_class, iou, floor, center_point_box)
    iou_threshold = 0.0 if iou_threshold is None or np.size(iou_threshold) == 0 else jnp.reshape(iou_threshold, (-1,))[0]
    x0, y0, x1, y1 = _box_corners(boxes, center_point_box)  # each [B, N]
    inter_w = jnp.minimum(x1[:, :, None], x1[:, None, :]) - jnp.maximum(x0[:, :, None], x0[:, None, :])
    inter_h = jnp.minimum(y1[:, :, None], y1[:, None, :]) - jnp.maximum(y0[:, :, None], y0[:, None, :])
    inter = inter_w * inter_h
    area = (x1 - x0) * (y1 - y0)
    union = area[:, :, None] + area[:, None, :] - inter
    overlapping = (inter_w > 0) & (inter_h > 0) & (area[:, :, None] > 0) & (area[:, None, :] > 0) & (union > 0)
    suppresses = overlapping & (inter / jnp.where(union > 0, union, 1) > iou_threshold)  # [B, N, N]
    order = jnp.argsort(-scores, axis=-1, stable=True)  # [B, C, N]
    ranked_scores = jnp.take_along_axis(scores, order, axis=-1)
    if score_threshold is None or np.size(score_threshold) == 0:
        candidate = jnp.ones(ranked_scores.shape, bool)
    else:
        candidate = ranked_scores > jnp.reshape(score_threshold, (-1,))[0]
    n_boxes = scores.shape[-1]

    def one_class(suppress, rank_order, is_candidate):
        ranked = suppress[rank_order][:, rank_order]  # ranked x ranked

        def visit(k, keep):
            free = ~jnp.any(keep & ranked[k])
            take = is_candidate[k] & free & (jnp.sum(keep) < max_per_class)
            return keep.at[k].set(take)

        return lax.fori_loop(0, n_boxes, visit, jnp.zeros((n_boxes,), bool))

    per_batch = jax.vmap(one_class, in_axes=(None, 0, 0))
    keep = jax.vmap(per_batch)(suppresses, order, candidate)  # [B, C, N] over ranked positions
    batch_index, class_index, rank = jnp.nonzero(keep)
    box_index = order[batch_index, class_index, rank]
    return jnp.stack([batch_index, class_index, box_index], axis=1).astype(jnp.int64)


@emitter("NonMaxSuppression", since=(10, 11), value_shaped=True)
def non_max_suppression(ctx: NodeContext) -> str:
    return ctx.call(_non_max_suppression, ctx.x(0), ctx.x(1), ctx.host_opt(2), ctx.opt(3), ctx.opt(4),
                    ctx.lit(bool(ctx.attr("center_point_box", 0))))
