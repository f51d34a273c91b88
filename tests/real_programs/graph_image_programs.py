"""Programs from jraph (graph networks) and dm-pix (image processing), as their documentation writes them.

jraph's models take a ``GraphsTuple`` (node/edge features, sender and receiver indices, per-graph node and
edge counts) and aggregate messages with segment sums; the graphs here are small random batches built
with ``jraph.batch``, their learned functions Haiku layers as in jraph's examples. dm-pix's functions
run on a random batch of RGB images in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tests.real_programs.catalogue import Built, program

_RNG = np.random.default_rng(46)


def _uniform(*shape: int) -> np.ndarray:
    return _RNG.uniform(0.0, 1.0, shape).astype(np.float32)


def _normal(*shape: int) -> np.ndarray:
    return _RNG.standard_normal(shape).astype(np.float32)


# ----------------------------------------------------------------------------- jraph
def _random_graph_batch(node_counts: tuple[int, ...], edge_counts: tuple[int, ...], features: int) -> Any:
    """A batch of random graphs (``jraph.batch`` of one GraphsTuple per graph) with node, edge and global features."""
    import jraph

    graphs = []
    for nodes, edges in zip(node_counts, edge_counts, strict=True):
        graphs.append(jraph.GraphsTuple(
            nodes=_normal(nodes, features), edges=_normal(edges, 4),
            senders=_RNG.integers(0, nodes, edges).astype(np.int32), receivers=_RNG.integers(0, nodes, edges).astype(np.int32),
            globals=_normal(1, 3), n_node=np.array([nodes], np.int32), n_edge=np.array([edges], np.int32)))
    return jraph.batch(graphs)


def _graph_specs(graph: Any) -> list[jax.ShapeDtypeStruct]:
    return [jax.ShapeDtypeStruct(leaf.shape, leaf.dtype) for leaf in _graph_leaves(graph)]


def _graph_leaves(graph: Any) -> list[np.ndarray]:
    """The GraphsTuple's arrays in JAX's default widths (``pad_with_graphs`` makes int64 counts and indices)."""
    leaves = (graph.nodes, graph.edges, graph.senders, graph.receivers, graph.globals, graph.n_node, graph.n_edge)
    return [np.asarray(x).astype(np.int32 if np.asarray(x).dtype.kind in "iu" else np.float32) for x in leaves]


def _haiku_graph_model(network: Callable[[Any], Any], graph: Any) -> Built:
    """``network(graph)`` as a Haiku transform; the exported function takes the GraphsTuple's arrays."""
    import haiku as hk
    import jraph

    transformed = hk.without_apply_rng(hk.transform(network))
    params = transformed.init(jax.random.key(0), graph)

    def forward(nodes, edges, senders, receivers, globals_, n_node, n_edge):
        out = transformed.apply(params, jraph.GraphsTuple(nodes=nodes, edges=edges, senders=senders, receivers=receivers,
                                                           globals=globals_, n_node=n_node, n_edge=n_edge))
        return out.nodes, out.edges, out.globals

    return Built(forward, _graph_specs(graph), _graph_leaves(graph))


@program("jraph_gcn_karate", library="jraph",
         origin="jraph examples/zacharys_karate_club: two GraphConvolution layers (Haiku Linear, self edges, symmetric normalisation)")
def _jraph_gcn() -> Built:
    import haiku as hk
    import jraph

    def network(graph):
        graph = jraph.GraphConvolution(update_node_fn=hk.Linear(8), add_self_edges=True)(graph)
        graph = graph._replace(nodes=jax.nn.relu(graph.nodes))
        return jraph.GraphConvolution(update_node_fn=hk.Linear(2))(graph)

    return _haiku_graph_model(network, _random_graph_batch((6, 9), (10, 14), 5))


@program("jraph_gat", library="jraph",
         origin="jraph GAT layer: attention logits over edges, segment_softmax per receiver, aggregated messages")
def _jraph_gat() -> Built:
    import haiku as hk
    import jraph

    def network(graph):
        def attention_logit_fn(sender_attr, receiver_attr, edges):
            del edges
            return jax.nn.leaky_relu(hk.Linear(1)(jnp.concatenate([sender_attr, receiver_attr], axis=-1)))

        gat = jraph.GAT(attention_query_fn=hk.Linear(8), attention_logit_fn=attention_logit_fn,
                        node_update_fn=jax.nn.elu)
        return gat(gat(graph))

    return _haiku_graph_model(network, _random_graph_batch((5, 7, 4), (9, 12, 6), 8))


@program("jraph_graph_network", library="jraph",
         origin="jraph GraphNetwork (edge, node and global MLP updates; per-graph aggregation by n_node/n_edge)")
def _jraph_graph_network() -> Built:
    import haiku as hk
    import jraph

    def mlp(sizes):
        return hk.nets.MLP(sizes, activation=jax.nn.relu)

    def network(graph):
        @jraph.concatenated_args
        def update_edge_fn(features):
            return mlp([16, 4])(features)

        @jraph.concatenated_args
        def update_node_fn(features):
            return mlp([16, 6])(features)

        @jraph.concatenated_args
        def update_global_fn(features):
            return mlp([8, 3])(features)

        return jraph.GraphNetwork(update_edge_fn=update_edge_fn, update_node_fn=update_node_fn,
                                  update_global_fn=update_global_fn)(graph)

    return _haiku_graph_model(network, _random_graph_batch((4, 6, 5), (7, 8, 6), 6))


# ----------------------------------------------------------------------------- dm-pix
@program("pix_colour_augmentation", library="dm-pix",
         origin="dm-pix colour augmentation: brightness, contrast, gamma, hue, saturation (through HSV), flips, rot90")
def _pix_colour() -> Built:
    import dm_pix as pix

    def augment(images):
        x = pix.adjust_brightness(images, 0.1)
        x = pix.adjust_contrast(x, 1.3)
        x = pix.adjust_gamma(jnp.clip(x, 0.0, 1.0), 0.8)
        x = pix.adjust_hue(x, 0.15)
        x = pix.adjust_saturation(x, 1.4)
        hsv = pix.rgb_to_hsv(images)
        return pix.flip_left_right(x), pix.flip_up_down(pix.rot90(x)), hsv, pix.rgb_to_grayscale(images)

    return Built(augment, [("B", 16, 16, 3)], [_uniform(2, 16, 16, 3)])


@program("pix_filters_and_geometry", library="dm-pix",
         origin="dm-pix gaussian_blur, rotate (affine_transform by map_coordinates), depth_to_space / space_to_depth",
         atol=1e-4)
def _pix_filters() -> Built:
    import dm_pix as pix

    def transform(image):
        blurred = pix.gaussian_blur(image, sigma=1.5, kernel_size=5)
        rotated = pix.rotate(image, angle=0.4, mode="constant", cval=0.0)
        shuffled = pix.depth_to_space(pix.space_to_depth(image, 2), 2)
        return blurred, rotated, shuffled

    return Built(transform, [(16, 16, 3)], [_uniform(16, 16, 3)])


@program("pix_image_metrics", library="dm-pix", origin="dm-pix image quality metrics: ssim, psnr, mae, mse")
def _pix_metrics() -> Built:
    import dm_pix as pix

    def metrics(a, b):
        return pix.ssim(a, b), pix.psnr(a, b), pix.mae(a, b), pix.mse(a, b)

    clean = _uniform(2, 24, 24, 3)
    noisy = np.clip(clean + 0.05 * _normal(2, 24, 24, 3), 0.0, 1.0).astype(np.float32)
    return Built(metrics, [("B", 24, 24, 3), ("B", 24, 24, 3)], [clean, noisy])


@program("jraph_padded_interaction_network", library="jraph",
         origin="jraph pad_with_graphs batch through InteractionNetwork, DeepSets-style globals, segment mean/variance/"
                "softmax/max over padded segments, padding masks")
def _jraph_padded() -> Built:
    import haiku as hk
    import jraph

    graph = jraph.pad_with_graphs(_random_graph_batch((4, 6), (7, 9), 6), n_node=13, n_edge=20, n_graph=3)

    def network(graph):
        graph = jraph.InteractionNetwork(update_edge_fn=jraph.concatenated_args(hk.nets.MLP([12, 4])),
                                         update_node_fn=jraph.concatenated_args(hk.nets.MLP([12, 6])))(graph)
        n_graph = graph.n_node.shape[0]
        total_nodes = graph.nodes.shape[0]
        node_graph = jnp.repeat(jnp.arange(n_graph), graph.n_node, axis=0, total_repeat_length=total_nodes)
        node_mask = jraph.get_node_padding_mask(graph)
        mean = jraph.segment_mean(graph.nodes, node_graph, n_graph)
        variance = jraph.segment_variance(graph.nodes, node_graph, n_graph)
        normalized = jraph.segment_normalize(graph.nodes, node_graph, n_graph)
        attention = jraph.segment_softmax(graph.nodes[:, 0], node_graph, n_graph)
        largest = jraph.segment_max_or_constant(graph.nodes, node_graph, n_graph)
        pooled = hk.Linear(3)(jnp.concatenate([mean, variance, largest], axis=-1))
        nodes = jnp.where(node_mask[:, None], normalized * attention[:, None], 0.0)
        return graph._replace(nodes=nodes, globals=pooled * jraph.get_graph_padding_mask(graph)[:, None])

    return _haiku_graph_model(network, graph)


@program("pix_random_augmentation", library="dm-pix",
         origin="dm-pix random augmentations from a key: flips, brightness, contrast, hue, saturation, crop; elastic "
                "deformation; solarize, HSL round trip, patches, padding and cropping",
         atol=1e-4)
def _pix_random() -> Built:
    import dm_pix as pix

    def augment(image, key_data):
        keys = jax.random.split(jax.random.wrap_key_data(key_data), 7)
        x = pix.random_flip_left_right(keys[0], image)
        x = pix.random_brightness(keys[1], x, max_delta=0.2)
        x = pix.random_contrast(keys[2], x, lower=0.7, upper=1.3)
        x = pix.random_hue(keys[3], jnp.clip(x, 0.0, 1.0), max_delta=0.1)
        x = pix.random_saturation(keys[4], x, lower=0.8, upper=1.2)
        crop = pix.random_crop(keys[5], x, (12, 12, 3))
        warped = pix.elastic_deformation(keys[6], image, alpha=6.0, sigma=2.0)
        hsl = pix.hsl_to_rgb(pix.rgb_to_hsl(image))
        patches = pix.extract_patches(image[None], sizes=(1, 4, 4, 1), strides=(1, 4, 4, 1), rates=(1, 1, 1, 1))
        framed = pix.resize_with_crop_or_pad(pix.pad_to_size(image, 20, 18), 14, 14)
        return crop, warped, pix.solarize(x, 0.6), hsl, patches, framed, pix.center_crop(image, 8, 8)

    key = np.asarray(jax.random.key_data(jax.random.key(46)))
    return Built(augment, [(16, 16, 3), jax.ShapeDtypeStruct((2,), jnp.uint32)], [_uniform(16, 16, 3), key])
