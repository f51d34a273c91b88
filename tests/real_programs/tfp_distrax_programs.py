"""Programs from distrax and TensorFlow Probability's JAX substrate: densities, bijectors, flows (opt-in).

Each computes sample-free functions of distributions (log densities, CDFs, entropies, KL divergences,
bijector log-determinants, a Gaussian process's marginal likelihood), which exercise lgamma, digamma,
the incomplete gamma and beta functions, log1p/expm1 and triangular solves.

Not in the default catalogue: both libraries need tfp-nightly (the stable tensorflow-probability 0.25
does not import with JAX 0.10), and a nightly build cannot be pinned in requirements/lock.txt (nightlies
are pruned from the index). ``load_all(include_tfp=True)`` (WORKBENCH_REAL_PROGRAMS_TFP=1) adds them, in
an environment with distrax and tfp-nightly installed.

What the sweep that wrote them found (2026-12-06, distrax 0.1.9, tfp-nightly 0.26.0.dev20261027): all 9
convert with parity; one converter bug on the way (TFP's GaussianProcess squares a reshaped scalar, and a
rewrite rule read the Reshape it removed: fixed in passes/scheduler.py, tested in plain JAX in
tests/jax_to_onnx/test_passes.py). TFP's programs use static shapes: its TensorShape emulation refuses
jax.export's symbolic dimensions (TypeError while tracing), a limit of TFP, not of the export.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from tests.real_programs.catalogue import Built, program

_RNG = np.random.default_rng(4646)


def _normal(*shape: int) -> np.ndarray:
    return _RNG.standard_normal(shape).astype(np.float32)


def _positive(*shape: int) -> np.ndarray:
    return _RNG.uniform(0.2, 3.0, shape).astype(np.float32)


def _tfp():
    from tensorflow_probability.substrates import jax as tfp

    return tfp


# ----------------------------------------------------------------------------- distrax
@program("distrax_log_probs", library="distrax",
         origin="distrax distributions: log_prob / entropy / KL of Normal, MultivariateNormalTri, Gamma, Beta, Dirichlet, Laplace",
         rtol=1e-4, atol=1e-4)
def _distrax_log_probs() -> Built:
    import distrax

    scale_tril = np.tril(_normal(3, 3)) * 0.3 + np.eye(3, dtype=np.float32) * 1.2

    def densities(x, loc, concentration, unit):
        normal = distrax.Normal(loc, 1.5)
        mvn = distrax.MultivariateNormalTri(loc, scale_tril)
        gamma = distrax.Gamma(concentration, 2.0)
        beta = distrax.Beta(concentration, 1.7)
        dirichlet = distrax.Dirichlet(concentration)
        laplace = distrax.Laplace(loc, 0.8)
        simplex = jax.nn.softmax(x, axis=-1)
        return (normal.log_prob(x), mvn.log_prob(x), gamma.log_prob(concentration * 1.3), beta.log_prob(unit),
                dirichlet.log_prob(simplex), laplace.log_prob(x), gamma.entropy(), beta.entropy(), dirichlet.entropy(),
                normal.kl_divergence(distrax.Normal(0.0, 1.0)), mvn.kl_divergence(distrax.MultivariateNormalDiag(jnp.zeros(3))))

    unit = _RNG.uniform(0.05, 0.95, (4, 3)).astype(np.float32)
    return Built(densities, [("B", 3), (3,), (3,), ("B", 3)], [_normal(4, 3), _normal(3), _positive(3), unit])


@program("distrax_tanh_normal_policy", library="distrax",
         origin="distrax Transformed(Normal, Tanh) squashed Gaussian policy (SAC-style log-likelihood of actions) and a mixture",
         rtol=1e-4, atol=1e-4)
def _distrax_tanh() -> Built:
    import distrax

    def policy_log_prob(mean, log_std, actions, logits):
        base = distrax.MultivariateNormalDiag(mean, jnp.exp(log_std))
        policy = distrax.Transformed(base, distrax.Block(distrax.Tanh(), ndims=1))
        chain = distrax.Chain([distrax.ScalarAffine(shift=0.5, scale=2.0), distrax.Tanh()])
        y, log_det = chain.forward_and_log_det(mean)
        mixture = distrax.MixtureSameFamily(distrax.Categorical(logits=logits), distrax.Normal(jnp.array([-1.0, 0.0, 2.0]),
                                                                                                  jnp.array([0.5, 1.0, 0.7])))
        return policy.log_prob(actions), y, log_det, mixture.log_prob(mean[:, 0])

    actions = np.tanh(_normal(5, 2)).astype(np.float32) * 0.95
    return Built(policy_log_prob, [("B", 2), ("B", 2), ("B", 2), (3,)],
                 [_normal(5, 2), 0.3 * _normal(5, 2), actions, _normal(3)])


@program("distrax_realnvp_flow", library="distrax",
         origin="distrax examples/flow: a RealNVP-style flow of MaskedCoupling layers with rational-quadratic splines (log_prob)",
         rtol=1e-3, atol=1e-4)
def _distrax_flow() -> Built:
    import distrax
    import haiku as hk

    dim, bins = 4, 6

    def bijector_fn(params):
        return distrax.RationalQuadraticSpline(params, range_min=-3.0, range_max=3.0)

    def log_prob(x):
        layers = []
        mask = np.arange(dim) % 2 == 0
        for _ in range(3):
            conditioner = hk.Sequential([hk.nets.MLP([16, 16], activate_final=True),
                                         hk.Linear(dim * (3 * bins + 1), w_init=hk.initializers.RandomNormal(0.1)),
                                         hk.Reshape((dim, 3 * bins + 1), preserve_dims=-1)])
            layers.append(distrax.MaskedCoupling(mask=mask, bijector=bijector_fn, conditioner=conditioner))
            mask = ~mask
        flow = distrax.Inverse(distrax.Chain(layers))
        base = distrax.MultivariateNormalDiag(jnp.zeros(dim), jnp.ones(dim))
        return distrax.Transformed(base, flow).log_prob(x)

    transformed = hk.without_apply_rng(hk.transform(log_prob))
    sample = np.clip(_normal(6, dim), -2.5, 2.5).astype(np.float32)
    params = transformed.init(jax.random.key(0), sample)
    return Built(lambda x: transformed.apply(params, x), [("B", dim)], [sample])


# ----------------------------------------------------------------------------- TensorFlow Probability (JAX substrate)
@program("tfp_jax_distributions", library="tensorflow-probability",
         origin="tfp.substrates.jax distributions: log_prob / cdf of StudentT, Gamma, Beta, VonMises, MultivariateNormalTriL, "
                "a Gaussian mixture; lbeta, igamma, betainc",
         rtol=1e-4, atol=1e-4)
def _tfp_distributions() -> Built:
    tfd = _tfp().distributions

    scale_tril = np.tril(_normal(3, 3)) * 0.3 + np.eye(3, dtype=np.float32)

    def densities(x, positive, unit, df):
        student = tfd.StudentT(df=df, loc=0.5, scale=1.2)
        gamma = tfd.Gamma(concentration=positive, rate=1.5)
        beta = tfd.Beta(positive, 2.0)
        von_mises = tfd.VonMises(loc=0.3, concentration=positive)
        mvn = tfd.MultivariateNormalTriL(loc=jnp.zeros(3), scale_tril=scale_tril)
        mixture = tfd.MixtureSameFamily(tfd.Categorical(probs=jnp.array([0.2, 0.5, 0.3])),
                                        tfd.Normal(loc=jnp.array([-1.0, 0.5, 2.0]), scale=jnp.array([0.4, 1.0, 0.6])))
        return (student.log_prob(x), student.cdf(x), gamma.log_prob(positive), gamma.cdf(positive), beta.log_prob(unit),
                beta.cdf(unit), von_mises.log_prob(x), mvn.log_prob(x), mixture.log_prob(x), tfd.Normal(0.0, 1.0).log_cdf(x))

    unit = _RNG.uniform(0.05, 0.95, (4, 3)).astype(np.float32)
    # static shapes: TFP's TensorShape emulation refuses jax.export's symbolic dimensions (TypeError at tracing)
    return Built(densities, [(4, 3), (3,), (4, 3), ()], [_normal(4, 3), _positive(3), unit, np.float32(4.5)])


@program("tfp_jax_bijectors", library="tensorflow-probability",
         origin="tfp.substrates.jax bijectors: a Chain of Shift/Scale/Softplus/Tanh/FillScaleTriL, log-det Jacobians and inverses",
         rtol=1e-4, atol=1e-4)
def _tfp_bijectors() -> Built:
    tfb = _tfp().bijectors
    tfd = _tfp().distributions

    def transform(x, flat):
        chain = tfb.Chain([tfb.Shift(0.5), tfb.Scale(2.0), tfb.Tanh()])
        softplus = tfb.Softplus()
        fill = tfb.FillScaleTriL(diag_bijector=tfb.Softplus(), diag_shift=1e-5)
        scale_tril = fill.forward(flat)
        lognormal = tfd.TransformedDistribution(tfd.Normal(0.0, 1.0), tfb.Exp())
        return (chain.forward(x), chain.forward_log_det_jacobian(x, event_ndims=0), chain.inverse(chain.forward(x) * 0.9),
                softplus.inverse(jnp.abs(x) + 0.1), scale_tril, fill.forward_log_det_jacobian(flat, event_ndims=1),
                lognormal.log_prob(jnp.abs(x) + 0.1))

    return Built(transform, [(4, 3), (6,)], [_normal(4, 3), _normal(6)])  # static: see tfp_jax_distributions


@program("tfp_jax_more_distributions", library="tensorflow-probability",
         origin="tfp.substrates.jax: Poisson, NegativeBinomial, Binomial, TruncatedNormal, Weibull, Kumaraswamy, LKJ, "
                "WishartTriL log densities and quantiles",
         rtol=1e-4, atol=1e-4)
def _tfp_more() -> Built:
    tfd = _tfp().distributions

    def densities(counts, x, unit, rate, chol):
        poisson = tfd.Poisson(rate=rate)
        negative_binomial = tfd.NegativeBinomial(total_count=5.0, logits=x)
        binomial = tfd.Binomial(total_count=12.0, probs=unit)
        truncated = tfd.TruncatedNormal(loc=0.2, scale=1.1, low=-1.0, high=2.0)
        weibull = tfd.Weibull(concentration=1.7, scale=rate)
        kumaraswamy = tfd.Kumaraswamy(concentration1=2.0, concentration0=rate)
        lkj = tfd.CholeskyLKJ(dimension=3, concentration=2.5)
        wishart = tfd.WishartTriL(df=5.0, scale_tril=jnp.eye(3) * 1.3)
        clipped = jnp.clip(x, -0.9, 1.9)
        return (poisson.log_prob(counts), negative_binomial.log_prob(counts), binomial.log_prob(counts),
                truncated.log_prob(clipped), truncated.cdf(clipped), weibull.log_prob(rate * unit + 0.1),
                kumaraswamy.log_prob(unit), tfd.Normal(0.0, 1.0).quantile(unit), lkj.log_prob(chol),
                wishart.log_prob(chol @ jnp.swapaxes(chol, -1, -2) * 4.0))

    counts = _RNG.integers(0, 10, (4, 3)).astype(np.float32)
    unit = _RNG.uniform(0.05, 0.95, (4, 3)).astype(np.float32)
    correlation = np.corrcoef(_normal(3, 10)).astype(np.float64)
    chol = np.linalg.cholesky(correlation).astype(np.float32)
    return Built(densities, [(4, 3), (4, 3), (4, 3), (3,), (3, 3)], [counts, _normal(4, 3), unit, _positive(3), chol])


@program("tfp_jax_gaussian_process", library="tensorflow-probability",
         origin="tfp.substrates.jax GaussianProcess marginal log-likelihood with an ExponentiatedQuadratic + Matern kernel",
         rtol=1e-3, atol=1e-3)
def _tfp_gp() -> Built:
    tfp = _tfp()
    kernels = tfp.math.psd_kernels

    def marginal_log_likelihood(index_points, observations, amplitude, length_scale):
        kernel = (kernels.ExponentiatedQuadratic(amplitude, length_scale)
                  + kernels.MaternFiveHalves(amplitude * 0.5, length_scale * 2.0))
        gp = tfp.distributions.GaussianProcess(kernel, index_points=index_points, observation_noise_variance=0.05)
        return gp.log_prob(observations), gp.mean(), gp.stddev()

    points = np.sort(_RNG.uniform(-2.0, 2.0, (12, 1)), axis=0).astype(np.float32)
    return Built(marginal_log_likelihood, [(12, 1), (12,), (), ()],
                 [points, np.sin(3 * points[:, 0]).astype(np.float32), np.float32(1.1), np.float32(0.6)])


@program("tfp_jax_special_math", library="tensorflow-probability",
         origin="tfp.substrates.jax.math special functions: lbeta, erfcinv, igammainv, bessel_ive, "
                "lambertw, owens_t, log_add_exp, softplus_inverse",
         rtol=1e-3, atol=1e-4)
def _tfp_math() -> Built:
    tfm = _tfp().math

    def special(x, positive, unit):
        return (tfm.lbeta(positive, positive + 1.0), tfm.erfcinv(unit),
                tfm.igammainv(positive, unit), tfm.bessel_ive(1.5, positive), tfm.lambertw(positive),
                tfm.owens_t(x, positive), tfm.log_add_exp(x, positive), tfm.softplus_inverse(positive),
                tfm.reduce_logmeanexp(x, axis=-1), tfm.log1mexp(-positive))

    unit = _RNG.uniform(0.05, 0.95, (5,)).astype(np.float32)
    return Built(special, [(5,), (5,), (5,)], [_normal(5), _positive(5), unit])


@program("distrax_hmm_and_covariances", library="distrax",
         origin="distrax HMM forward-backward and a Kalman-free filter (scan), full/low-rank covariance Gaussians, "
                "triangular affine bijectors, discrete distributions",
         rtol=1e-4, atol=1e-4)
def _distrax_hmm() -> Built:
    import distrax

    states = 3
    transition = jax.nn.softmax(_normal(states, states) + 2.0 * np.eye(states, dtype=np.float32), axis=-1)
    factor = _normal(3, 2) * 0.5
    lower_upper = _normal(3, 3) * 0.3 + np.eye(3, dtype=np.float32) * 1.5

    def evaluate(observations, x, logits):
        hmm = distrax.HMM(init_dist=distrax.Categorical(logits=logits),
                          trans_dist=distrax.Categorical(probs=transition),
                          obs_dist=distrax.Normal(jnp.array([-1.0, 0.0, 1.5]), jnp.array([0.5, 0.7, 0.4])))
        alphas, betas, marginals, log_likelihood = hmm.forward_backward(observations)
        full = distrax.MultivariateNormalFullCovariance(jnp.zeros(3), jnp.eye(3) + factor @ factor.T)
        low_rank = distrax.MultivariateNormalDiagPlusLowRank(jnp.zeros(3), jnp.ones(3), factor)
        affine = distrax.LowerUpperTriangularAffine(lower_upper, jnp.ones(3))
        y, log_det = affine.inverse_and_log_det(x)
        counts = jnp.array([2.0, 0.0, 3.0])
        discrete = (distrax.OneHotCategorical(logits=logits).log_prob(jax.nn.one_hot(jnp.argmax(x, -1), 3)),
                    distrax.Softmax(logits, temperature=0.5).probs, distrax.Multinomial(5, logits=logits).log_prob(counts),
                    distrax.EpsilonGreedy(logits, 0.1).probs, distrax.Gumbel(0.2, 1.3).log_prob(x),
                    distrax.Logistic(0.0, 0.7).cdf(x), distrax.VonMises(0.3, 2.0).log_prob(x))
        return (alphas, betas, marginals, log_likelihood, full.log_prob(x), low_rank.log_prob(x), y, log_det, *discrete)

    return Built(evaluate, [(10,), (4, 3), (3,)], [_normal(10), _normal(4, 3), _normal(3)])
