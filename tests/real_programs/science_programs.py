"""Scientific programs nobody here wrote: jax-cosmo (cosmology), s2fft (spherical harmonic transforms) and
MuJoCo MJX (rigid-body physics), called as their documentation calls them.

jax-cosmo: the linear (Eisenstein & Hu) and nonlinear (halofit) matter power spectra of a cosmology whose
parameters are inputs, and the background quantities (comoving and angular-diameter distances from a
Runge-Kutta table of the expansion, the growth factor from an ODE, each read back by interpolation), then a
weak-lensing angular power spectrum (Limber integral by Simpson's rule over the lensing kernels).
s2fft: the forward and inverse spherical harmonic transforms of a real signal on the McEwen-Wiaux sampling by
its JAX method, with Wigner-d recursions on the fly and with precomputed kernels (FFTs over longitude, complex
phases and sign flips; complex coefficients returned as real and imaginary parts). MJX: a small model written in MJCF in code (a hinged double pendulum with a motor, a free box falling
onto a plane) put on the device and stepped under lax.scan (collision detection, constraint solver's while loop).
"""

from __future__ import annotations

import importlib.metadata
import sys
import types
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tests.real_programs.catalogue import Built, program

_RNG = np.random.default_rng(4951)

# Omega_c, Omega_b, h, n_s, sigma8 near Planck 2015's values (the parameters the programs take as inputs)
_COSMOLOGY = np.array([0.2589, 0.0486, 0.6774, 0.9667, 0.8159], np.float32)


def _import_jax_cosmo() -> Any:
    """``jax_cosmo``, imported with a stand-in ``pkg_resources`` where setuptools no longer has one. jax-cosmo
    0.1.0's ``__init__`` reads its own version with ``pkg_resources.get_distribution`` (and nothing else of it), and
    the locked setuptools (84) no longer ships ``pkg_resources``: the stand-in answers that one question from
    importlib.metadata and is taken out of ``sys.modules`` again once jax_cosmo is imported (the locked setuptools
    pin stays where it is)."""
    try:
        import jax_cosmo
    except ModuleNotFoundError as error:
        if error.name != "pkg_resources":
            raise
        stand_in = types.ModuleType("pkg_resources")
        stand_in.DistributionNotFound = importlib.metadata.PackageNotFoundError  # type: ignore[attr-defined]
        stand_in.get_distribution = lambda name: types.SimpleNamespace(  # type: ignore[attr-defined]
            version=importlib.metadata.version(name))
        sys.modules["pkg_resources"] = stand_in
        try:
            import jax_cosmo
        finally:
            del sys.modules["pkg_resources"]
    return jax_cosmo


def _cosmology(params: jax.Array) -> Any:
    """jax-cosmo's Planck15 cosmology with its five free parameters taken from ``params``."""
    jc = _import_jax_cosmo()
    return jc.Planck15(Omega_c=params[0], Omega_b=params[1], h=params[2], n_s=params[3], sigma8=params[4])


# ----------------------------------------------------------------------------- jax-cosmo
@program("jax_cosmo_power_spectra", library="jax-cosmo", rtol=2e-3, atol=1e-4,
         origin="jax-cosmo's introduction: linear_matter_power and nonlinear_matter_power (halofit) of "
                "jc.Planck15 with its parameters as inputs, over a log-spaced k grid at several scale factors")
def jax_cosmo_power_spectra() -> Built:
    jc = _import_jax_cosmo()

    def spectra(params: jax.Array, k: jax.Array, a: jax.Array) -> tuple[jax.Array, jax.Array]:
        cosmo = _cosmology(params)
        linear = jax.vmap(lambda scale: jc.power.linear_matter_power(cosmo, k, scale))(a)
        nonlinear = jax.vmap(lambda scale: jc.power.nonlinear_matter_power(cosmo, k, scale))(a)
        return jnp.log(linear), jnp.log(nonlinear)

    k = np.logspace(-3, 0.5, 24).astype(np.float32)
    return Built(spectra, [(5,), (24,), (3,)], [_COSMOLOGY, k, np.array([0.5, 0.75, 1.0], np.float32)])


@program("jax_cosmo_background", library="jax-cosmo", rtol=2e-3, atol=1e-3,
         origin="jax-cosmo's background module: radial comoving and angular-diameter distances, Hubble rate, "
                "growth factor and rate at given scale factors (ODE tables read back by interpolation)")
def jax_cosmo_background() -> Built:
    jc = _import_jax_cosmo()

    def background(params: jax.Array, a: jax.Array) -> tuple[jax.Array, ...]:
        cosmo = _cosmology(params)
        bg = jc.background
        return (bg.radial_comoving_distance(cosmo, a), bg.angular_diameter_distance(cosmo, a), bg.H(cosmo, a),
                bg.growth_factor(cosmo, a), bg.growth_rate(cosmo, a))

    a = np.sort(_RNG.uniform(0.2, 1.0, 7)).astype(np.float32)
    return Built(background, [(5,), ("N",)], [_COSMOLOGY, a])


@program("jax_cosmo_lensing_cl", library="jax-cosmo", rtol=5e-3, atol=1e-12,
         origin="jax-cosmo's weak-lensing example: two Smail redshift bins, WeakLensing probe, angular_cl over "
                "multipoles (Limber integral by Simpson's rule, halofit power)")
def jax_cosmo_lensing_cl() -> Built:
    jc = _import_jax_cosmo()

    bins = [jc.redshift.smail_nz(1.0, 2.0, z0, gals_per_arcmin2=10.0) for z0 in (0.5, 1.0)]

    def cl(params: jax.Array, ell: jax.Array) -> jax.Array:
        probe = jc.probes.WeakLensing(bins, sigma_e=0.26)
        return jc.angular_cl.angular_cl(_cosmology(params), ell, [probe])

    ell = np.logspace(1, 3, 6).astype(np.float32)
    return Built(cl, [(5,), (6,)], [_COSMOLOGY, ell])


# ----------------------------------------------------------------------------- s2fft
@program("s2fft_forward_inverse", library="s2fft", rtol=1e-3, atol=1e-4,
         origin="s2fft's quick start: forward and inverse spherical harmonic transforms (method='jax', McEwen-Wiaux "
                "sampling, Wigner-d recursions on the fly) of a real signal at band-limit L=8")
def s2fft_forward_inverse() -> Built:
    import s2fft

    band_limit = 8

    def transforms(signal: jax.Array) -> tuple[jax.Array, ...]:
        flm = s2fft.forward(signal.astype(jnp.complex64), band_limit, method="jax")
        back = s2fft.inverse(flm, band_limit, method="jax")
        return jnp.real(flm), jnp.imag(flm), jnp.real(back)

    signal = _RNG.standard_normal((band_limit, 2 * band_limit - 1)).astype(np.float32)
    return Built(transforms, [signal.shape], [signal])


@program("s2fft_precomputed_kernels", library="s2fft", rtol=1e-3, atol=1e-4,
         origin="s2fft's precompute transforms: spin_spherical_kernel_jax built once, then forward and inverse "
                "(method='jax') of a real signal with reality=True, as the docs advise for repeated transforms")
def s2fft_precomputed_kernels() -> Built:
    from s2fft.precompute_transforms import construct, spherical

    band_limit = 8
    forward_kernel = construct.spin_spherical_kernel_jax(band_limit, reality=True, forward=True)
    inverse_kernel = construct.spin_spherical_kernel_jax(band_limit, reality=True, forward=False)

    def transforms(signal: jax.Array) -> tuple[jax.Array, ...]:
        flm = spherical.forward(signal, band_limit, kernel=forward_kernel, reality=True, method="jax")
        back = spherical.inverse(flm, band_limit, kernel=inverse_kernel, reality=True, method="jax")
        return jnp.real(flm), jnp.imag(flm), jnp.real(back)

    signal = _RNG.standard_normal((band_limit, 2 * band_limit - 1)).astype(np.float32)
    return Built(transforms, [signal.shape], [signal])


# ----------------------------------------------------------------------------- MuJoCo MJX
_MJCF = """
<mujoco model="pendulum and box">
  <option timestep="0.005"/>
  <worldbody>
    <geom name="floor" type="plane" size="2 2 0.1"/>
    <body name="upper" pos="0 0 1.2">
      <joint name="shoulder" type="hinge" axis="0 1 0" damping="0.05"/>
      <geom type="capsule" fromto="0 0 0 0 0 -0.4" size="0.04" mass="1"/>
      <body name="lower" pos="0 0 -0.4">
        <joint name="elbow" type="hinge" axis="0 1 0" damping="0.05"/>
        <geom type="capsule" fromto="0 0 0 0 0 -0.4" size="0.035" mass="0.8"/>
      </body>
    </body>
    <body name="box" pos="0.6 0 0.12">
      <freejoint/>
      <geom type="box" size="0.1 0.1 0.1" mass="0.5"/>
    </body>
  </worldbody>
  <actuator>
    <motor joint="shoulder" gear="1" ctrlrange="-2 2" ctrllimited="true"/>
  </actuator>
</mujoco>
"""


@program("mjx_pendulum_box_rollout", library="mujoco-mjx", rtol=1e-3, atol=1e-4,
         origin="MJX's tutorial pattern: mujoco.MjModel.from_xml_string, mjx.put_model / make_data, mjx.step under "
                "lax.scan with controls; a motor-driven double pendulum and a box resting on the floor")
def mjx_pendulum_box_rollout() -> Built:
    import mujoco
    from mujoco import mjx

    model = mjx.put_model(mujoco.MjModel.from_xml_string(_MJCF))

    def rollout(qpos: jax.Array, qvel: jax.Array, controls: jax.Array) -> tuple[jax.Array, jax.Array]:
        data = mjx.make_data(model).replace(qpos=qpos, qvel=qvel)

        def step(data, control):
            data = mjx.step(model, data.replace(ctrl=control))
            return data, (data.qpos, data.qvel)

        _, (positions, velocities) = jax.lax.scan(step, data, controls)
        return positions, velocities

    qpos = np.array([0.4, -0.3, 0.6, 0.0, 0.1, 1.0, 0.0, 0.0, 0.0], np.float32)
    qvel = np.zeros(8, np.float32)
    qvel[:2] = [0.5, -0.2]
    controls = _RNG.uniform(-1, 1, (6, 1)).astype(np.float32)
    return Built(rollout, [(9,), (8,), (6, 1)], [qpos, qvel, controls])
