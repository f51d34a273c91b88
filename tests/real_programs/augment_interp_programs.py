"""Programs from augmax (image augmentation in JAX) and interpax (interpolation in JAX), written as their
documentation writes them.

augmax: a Chain of geometric and colour transformations applied to a batch of images with one key per image
(``jax.vmap(chain)``), its geometric chain fused into one coordinate warp sampled by map_coordinates; and an
image with its segmentation mask augmented together (the mask sampled by nearest neighbour). interpax: the
1-D methods of ``interp1d`` (linear, cubic, monotonic, Akima...) with derivatives and extrapolation, and
``interp2d`` with the spline classes (``CubicSpline``, ``PchipInterpolator``) evaluated, differentiated and
integrated; the interpolated values are inputs, so the exported model computes the splines' coefficients (built
with ``check=False``: the classes' input checks run in Python and need concrete values; the knots are constants).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from tests.real_programs.catalogue import Built, program

_RNG = np.random.default_rng(4850)
_KEY = jax.ShapeDtypeStruct((2,), jnp.uint32)


def _key_data(seed: int) -> np.ndarray:
    return np.asarray(jax.random.key_data(jax.random.key(seed)))


# ----------------------------------------------------------------------------- augmax
@program("augmax_chain_batch", library="augmax",
         origin="augmax Chain (RandomSizedCrop, HorizontalFlip, Rotate, ColorJitter, Normalize), vmapped with a "
                "key per image")
def augmax_chain_batch() -> Built:
    import augmax

    chain = augmax.Chain(
        augmax.ByteToFloat(),
        augmax.RandomSizedCrop(24, 24, zoom_range=(0.7, 1.0)),
        augmax.HorizontalFlip(),
        augmax.Rotate(angle_range=(-20, 20)),
        augmax.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.05),
        augmax.Normalize(),
    )

    def augment(key_data, images):
        keys = jax.random.split(jax.random.wrap_key_data(key_data), images.shape[0])
        return jax.vmap(chain)(keys, images)

    images = _RNG.integers(0, 256, (3, 32, 32, 3)).astype(np.uint8)
    return Built(augment, [_KEY, jax.ShapeDtypeStruct(("B", 32, 32, 3), jnp.uint8)], [_key_data(1), images])


@program("augmax_image_and_mask", library="augmax",
         origin="augmax Chain on an (image, mask) pair with input_types IMAGE and MASK (segmentation augmentation)")
def augmax_image_and_mask() -> Built:
    import augmax

    chain = augmax.Chain(
        augmax.Rotate90(),
        augmax.Translate(2, -3),
        augmax.Warp(strength=3, coarseness=8),
        augmax.RandomGamma(range=(0.75, 1.33)),
        input_types=[augmax.InputType.IMAGE, augmax.InputType.MASK],
    )

    def augment(key_data, image, mask):
        return chain(jax.random.wrap_key_data(key_data), [image, mask])

    image = _RNG.uniform(0, 1, (20, 20, 3)).astype(np.float32)
    mask = (_RNG.random((20, 20)) * 4).astype(np.int32)
    return Built(augment, [_KEY, (20, 20, 3), jax.ShapeDtypeStruct((20, 20), jnp.int32)], [_key_data(2), image, mask])


# ----------------------------------------------------------------------------- interpax
@program("interpax_interp1d_methods", library="interpax",
         origin="interpax interp1d over a sampled signal: linear, cubic, cubic2, catmull-rom, cardinal, monotonic, "
                "akima; first derivatives; periodic and extrapolated queries")
def interpax_interp1d_methods() -> Built:
    from interpax import interp1d

    methods = ("linear", "cubic", "cubic2", "catmull-rom", "cardinal", "monotonic", "akima")

    def interpolate(queries, grid, values):
        out = [interp1d(queries, grid, values, method=m) for m in methods]
        out += [interp1d(queries, grid, values, method=m, derivative=1) for m in ("cubic", "monotonic")]
        out.append(interp1d(queries, grid, values, method="cubic", extrap=True))
        out.append(interp1d(queries * 3.0, grid, values, method="cubic", period=grid[-1] - grid[0] + grid[1]))
        return jnp.stack(out)

    grid = np.sort(_RNG.uniform(0, 4, 12)).astype(np.float32)
    grid[0], grid[-1] = 0.0, 4.0
    values = np.sin(2 * grid).astype(np.float32) + 0.1 * _RNG.standard_normal(12).astype(np.float32)
    queries = _RNG.uniform(-0.3, 4.3, 9).astype(np.float32)
    return Built(interpolate, [("N",), (12,), (12,)], [queries, grid, values])


@program("interpax_splines_2d", library="interpax",
         origin="interpax interp2d (linear, cubic) on a grid, CubicSpline and PchipInterpolator: values, derivatives, "
                "integrals")
def interpax_splines_2d() -> Built:
    from interpax import CubicSpline, PchipInterpolator, interp2d

    x = np.linspace(0, 3, 8).astype(np.float32)
    y = np.linspace(-1, 1, 6).astype(np.float32)

    def evaluate(xq, yq, surface, curve):
        planes = [interp2d(xq, yq, x, y, surface, method=m) for m in ("linear", "cubic")]
        spline = CubicSpline(x, curve, bc_type="natural", check=False)
        pchip = PchipInterpolator(x, curve, check=False)
        lines = [spline(xq), spline.derivative()(xq), pchip(xq), pchip(xq, 1)]
        area = jnp.stack([spline.integrate(x[0], x[-1]), pchip.integrate(x[1], x[-2])])
        return jnp.stack(planes), jnp.stack(lines), area

    surface = (np.cos(x)[:, None] * np.exp(y)[None, :]).astype(np.float32) + 0.05 * _RNG.standard_normal((8, 6)).astype(np.float32)
    curve = np.tanh(x - 1.5).astype(np.float32)
    xq = _RNG.uniform(0, 3, 7).astype(np.float32)
    yq = _RNG.uniform(-1, 1, 7).astype(np.float32)
    return Built(evaluate, [("N",), ("N",), (8, 6), (8,)], [xq, yq, surface, curve])
