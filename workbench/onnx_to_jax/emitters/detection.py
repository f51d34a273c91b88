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
def _nms_host(boxes, scores, max_per_class, iou_threshold, score_threshold, center_point_box, pair_budget=1 << 24):
    """NonMaxSuppression on concrete arrays with numpy: the same arithmetic as the traced form below,
    without compiling anything (a detector calls it once per image and class level).

    Per (batch, class), the candidates in score order are resolved from the pairs of them that overlap
    by more than ``iou_threshold`` (``_nms_overlapping_pairs``, ``_nms_resolve``), when there are at
    most ``pair_budget`` pairs of candidates whose x ranges overlap and that costs less than the greedy
    walk (``_nms_greedy``), whose work grows with the boxes kept times the candidates; over the budget,
    group by group of boxes whose x ranges no box bridges (``_nms_by_x_groups``). A detector's
    batched NMS keeps thousands of its tens of thousands of candidates (SSDlite: 16,566 of 27,000, its
    90 classes offset apart), where each box overlaps a few dozen others: the walk took 2.8 s there.
    """
    boxes, scores = np.asarray(boxes), np.asarray(scores)
    if center_point_box:
        x_c, y_c, w, h = (boxes[..., i] for i in range(4))
        x0, y0, x1, y1 = x_c - w / 2, y_c - h / 2, x_c + w / 2, y_c + h / 2
    else:
        y_a, x_a, y_b, x_b = (boxes[..., i] for i in range(4))
        x0, y0, x1, y1 = np.minimum(x_a, x_b), np.minimum(y_a, y_b), np.maximum(x_a, x_b), np.maximum(y_a, y_b)
    selected = []
    for b in range(scores.shape[0]):
        area = (x1[b] - x0[b]) * (y1[b] - y0[b])
        for c in range(scores.shape[1]):
            order = np.argsort(-scores[b, c], kind="stable")
            if score_threshold is not None:
                order = order[scores[b, c][order] > score_threshold]
            # the candidates' corners and areas in score order (rank r: the r-th best candidate)
            ranked = (x0[b][order], y0[b][order], x1[b][order], y1[b][order], area[order])
            n = order.size
            by_x, reach = _nms_x_order(ranked)
            pairs = int(reach.sum())
            walk = min(max_per_class, n) * (n // 2 + 2000)  # the greedy walk's element operations, at most
            if pairs <= pair_budget and 4 * pairs < walk:
                first, second = _nms_overlapping_pairs(ranked, by_x, reach, iou_threshold)
                kept = _nms_resolve(n, first, second)[:max_per_class]
            elif 4 * pairs < walk and pair_budget > 0:
                kept = _nms_by_x_groups(ranked, by_x, reach, iou_threshold, pair_budget)[:max_per_class]
            else:
                kept = _nms_greedy(ranked, iou_threshold, max_per_class)
            selected.extend((b, c, int(order[rank])) for rank in kept)
    return np.asarray(selected, np.int64).reshape(-1, 3)


@runtime_helper
def _nms_x_order(ranked):
    """The ranked boxes' order by left edge, and for the k-th box from the left how many boxes right of it
    start before it ends (the pairs whose x ranges overlap)."""
    by_x = np.argsort(ranked[0], kind="stable")
    ends = np.searchsorted(ranked[0][by_x], ranked[2][by_x], side="left")
    return by_x, np.maximum(ends - np.arange(by_x.size) - 1, 0)


@runtime_helper
def _nms_by_x_groups(ranked, by_x, reach, iou_threshold, pair_budget):
    """Ranks of the kept boxes (in rank order) when the overlapping pairs are too many to hold at once,
    resolved group by group: boxes whose x ranges no box bridges never suppress one another, so the greedy
    rule keeps in each such group what it keeps there alone (the kept set is their union). Groups are taken
    together up to ``pair_budget`` pairs; a single group over it takes the greedy walk. Mask R-CNN's box
    NMS (torchvision's batched NMS: 90 classes offset apart, 76,000 of 90,000 boxes kept) took 29 s in the
    walk, as it has 10**8 pairs in all but under 10**6 per class."""
    x0, x1 = ranked[0][by_x], ranked[2][by_x]
    # a group starts at a box that starts where every box before it (in x order) has ended
    starts = np.flatnonzero(x0[1:] >= np.maximum.accumulate(x1)[:-1]) + 1
    bounds = np.concatenate([[0], starts, [x0.size]])
    group_pairs = np.add.reduceat(reach, bounds[:-1]) if x0.size else np.zeros(0, np.int64)
    kept, lo, total = [], 0, 0
    for g in range(group_pairs.size):
        total += int(group_pairs[g])
        last = g + 1 == group_pairs.size
        if not last and total + int(group_pairs[g + 1]) <= pair_budget:
            continue
        ranks = np.sort(by_x[bounds[lo]:bounds[g + 1]])  # the batch's boxes, in rank order
        part = tuple(values[ranks] for values in ranked)
        if total <= pair_budget:
            part_by_x, part_reach = _nms_x_order(part)
            first, second = _nms_overlapping_pairs(part, part_by_x, part_reach, iou_threshold)
            kept.append(ranks[_nms_resolve(ranks.size, first, second)])
        else:
            kept.append(ranks[np.asarray(_nms_greedy(part, iou_threshold, ranks.size), np.int64)])
        lo, total = g + 1, 0
    return np.sort(np.concatenate(kept)) if kept else np.zeros(0, np.int64)


@runtime_helper
def _nms_suppresses(ranked, i, j, iou_threshold):
    """Whether ranked box ``i`` suppresses ranked box ``j`` (index arrays, or an int against a slice):
    the traced form's test, which is symmetric in the two boxes."""
    x0, y0, x1, y1, area = ranked
    inter_w = np.minimum(x1[j], x1[i]) - np.maximum(x0[j], x0[i])
    inter_h = np.minimum(y1[j], y1[i]) - np.maximum(y0[j], y0[i])
    inter = inter_w * inter_h
    union = area[j] + area[i] - inter
    overlapping = (inter_w > 0) & (inter_h > 0) & (area[j] > 0) & (area[i] > 0) & (union > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return overlapping & (inter / np.where(union > 0, union, 1) > iou_threshold)


@runtime_helper
def _nms_greedy(ranked, iou_threshold, max_per_class):
    """Ranks of the kept boxes: one kept box at a time, clearing what it suppresses among the boxes after
    it still in the running (O(N) memory: an N x N overlap matrix took gigabytes on a detector's
    candidates, SSDlite's run was OOM-killed at 10 GB). Cheap when few boxes are kept."""
    alive = np.ones(ranked[0].size, bool)
    kept = []
    position = 0
    while len(kept) < max_per_class:
        ahead = np.flatnonzero(alive[position:])
        if ahead.size == 0:
            break
        i = position + int(ahead[0])
        kept.append(i)
        position = i + 1
        rest = slice(position, None)
        alive[rest] &= ~_nms_suppresses(ranked, i, rest, iou_threshold)
    return kept


@runtime_helper
def _nms_overlapping_pairs(ranked, by_x, reach, iou_threshold, chunk=1 << 19):
    """The pairs of ranked boxes (first < second) where one suppresses the other: pairs whose x ranges
    overlap come from sorting by the left edge (each box against those starting before it ends), and
    are tested ``chunk`` pairs at a time, so memory stays bounded whatever their number."""
    firsts, seconds = [], []
    starts = np.cumsum(reach) - reach
    left = 0
    while left < reach.size:
        # boxes left .. right-1 (in x order) bring at most about `chunk` pairs
        right = max(int(np.searchsorted(starts, starts[left] + chunk, side="right")), left + 1)
        counts = reach[left:right]
        a = np.repeat(np.arange(left, right), counts)
        b = a + 1 + (np.arange(a.size) - np.repeat(starts[left:right] - starts[left], counts))
        i, j = by_x[a], by_x[b]
        hit = _nms_suppresses(ranked, i, j, iou_threshold)
        i, j = i[hit], j[hit]
        firsts.append(np.minimum(i, j))
        seconds.append(np.maximum(i, j))
        left = right
    if not firsts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(firsts), np.concatenate(seconds)


@runtime_helper
def _nms_resolve(n, first, second, rounds=32):
    """Ranks of the boxes the greedy rule keeps, given every suppressing pair (``first`` ranks before
    ``second``): a box is kept when none of the boxes before it that suppress it is kept. Resolved in
    rounds over all pairs at once (a box whose suppressors are all dropped is kept, one with a kept
    suppressor is dropped; every round settles at least the first undecided box), the boxes left after
    ``rounds`` rounds (long chains of overlaps) one by one in rank order."""
    state = np.zeros(n, np.int8)  # 0 undecided, 1 kept, 2 dropped
    for _ in range(rounds):
        open_pairs = state[first] != 2
        first, second = first[open_pairs], second[open_pairs]
        dropped = second[state[first] == 1]
        state[dropped] = 2
        waiting = np.bincount(second[state[first] != 2], minlength=n)
        state[(state == 0) & (waiting == 0)] = 1
        if not (state == 0).any():
            return np.flatnonzero(state == 1)
    by_second = np.argsort(second, kind="stable")
    first, second = first[by_second], second[by_second]
    bounds = np.searchsorted(second, np.arange(n + 1))
    for j in np.flatnonzero(state == 0):
        state[j] = 2 if (state[first[bounds[j]:bounds[j + 1]]] == 1).any() else 1
    return np.flatnonzero(state == 1)


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
