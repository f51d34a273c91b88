"""Programs from Jaxley (biophysical neuron simulation) and Brax (rigid-body physics for reinforcement learning),
as their documentation writes them.

Jaxley: a morphologically detailed cell (three branches of four compartments, Hodgkin-Huxley channels) driven by
a step current through ``data_stimulate``, its trainable parameters (``make_trainable``, ``get_parameters``) an
input as in the gradient-descent tutorials; and a small network of such cells connected by ionotropic synapses
(``jx.Network``, ``fully_connect``) with synaptic conductances trained; and the tutorials' gradient of a voltage
loss through the simulation with ``checkpoint_lengths`` (a checkpointed loop of loops: its backward pass
recomputes each chunk in a ``closed_call``). Each simulation is ``jx.integrate``: a backward-Euler time loop whose
every step solves the cells' tridiagonal voltage systems.
Brax: environment rollouts (``envs.get_environment(..., backend=...)``, reset from a key, actions stepped under
``lax.scan``) on the generalized, positional and spring pipelines; and the policy a trained Brax PPO agent serves
(``ppo_networks.make_ppo_networks`` with ``running_statistics.normalize``, ``make_inference_fn``), sampled and
deterministic; and the PPO learner's loss and gradients (``losses.compute_ppo_loss`` under ``jax.value_and_grad``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tests.real_programs.catalogue import Built, program

_KEY = jax.ShapeDtypeStruct((2,), jnp.uint32)


def _key_data(seed: int) -> np.ndarray:
    return np.asarray(jax.random.key_data(jax.random.key(seed)))


# ----------------------------------------------------------------------------- Jaxley
_DT, _T_MAX = 0.025, 5.0  # ms: 201 time steps


@program("jaxley_hh_cell_step_current", library="jaxley", rtol=1e-3, atol=1e-2,
         origin="Jaxley's getting-started and gradient tutorials: jx.Cell of jx.Branch(jx.Compartment(), ncomp=4) "
                "with parents [-1, 0, 0], HH channels, jx.step_current through data_stimulate, recorded voltages, "
                "make_trainable('HH_gNa'/'radius') parameters passed to jx.integrate")
def jaxley_hh_cell_step_current() -> Built:
    import jaxley as jx
    from jaxley.channels import HH

    cell = jx.Cell(jx.Branch(jx.Compartment(), ncomp=4), parents=[-1, 0, 0])
    cell.insert(HH())
    cell.branch(0).comp(0).record("v", verbose=False)
    cell.branch(2).comp(3).record("v", verbose=False)
    cell.make_trainable("HH_gNa", verbose=False)
    cell.make_trainable("radius", verbose=False)
    params = [{name: np.asarray(value) for name, value in group.items()} for group in cell.get_parameters()]

    def simulate(params: list[dict[str, jax.Array]], amplitude: jax.Array) -> jax.Array:
        current = jx.step_current(i_delay=0.5, i_dur=2.0, i_amp=amplitude, delta_t=_DT, t_max=_T_MAX)
        stimuli = cell.branch(0).comp(0).data_stimulate(current)
        return jx.integrate(cell, params=params, data_stimuli=stimuli, delta_t=_DT)

    # mV: two values that cross 0 mV on the action potential's upstroke differ by 3e-3 (float32 steps of 0.025 ms)
    return Built(simulate, [params, ()], [params, np.float32(0.3)])


@program("jaxley_synaptic_network", library="jaxley", rtol=1e-3, atol=1e-2,
         origin="Jaxley's network tutorial: jx.Network of three HH cells, jx.fully_connect of the first two onto the "
                "third with IonotropicSynapse, the synaptic conductances made trainable, the first cells stimulated")
def jaxley_synaptic_network() -> Built:
    import jaxley as jx
    from jaxley.channels import HH
    from jaxley.connect import fully_connect
    from jaxley.synapses import IonotropicSynapse

    cell = jx.Cell(jx.Branch(jx.Compartment(), ncomp=2), parents=[-1, 0])
    network = jx.Network([cell, cell, cell])
    network.insert(HH())
    fully_connect(network.cell([0, 1]), network.cell([2]), IonotropicSynapse())
    network.cell("all").branch(0).comp(0).record("v", verbose=False)
    network.IonotropicSynapse.edge("all").make_trainable("IonotropicSynapse_gS", verbose=False)  # one per synapse
    params = [{name: np.asarray(value) for name, value in group.items()} for group in network.get_parameters()]

    def simulate(params: list[dict[str, jax.Array]], amplitudes: jax.Array) -> jax.Array:
        currents = [jx.step_current(i_delay=0.5, i_dur=2.0, i_amp=amplitudes[i], delta_t=_DT, t_max=_T_MAX)
                    for i in range(2)]
        stimuli = None
        for index, current in enumerate(currents):
            stimuli = network.cell(index).branch(0).comp(0).data_stimulate(current, stimuli)
        return jx.integrate(network, params=params, data_stimuli=stimuli, delta_t=_DT)

    params[0]["IonotropicSynapse_gS"] = np.array([2e-3, 3e-3], np.float32)  # trained-like: the default 1e-4 barely acts
    return Built(simulate, [params, (2,)], [params, np.array([0.35, 0.25], np.float32)])


@program("jaxley_gradient_checkpointed", library="jaxley", rtol=2e-3, atol=1e-4,
         origin="Jaxley's gradient-descent tutorial: the loss of a recorded voltage trace against a target, "
                "jax.value_and_grad through jx.integrate with checkpoint_lengths (its nested checkpointed time "
                "loop), per-branch radii and HH conductances trainable")
def jaxley_gradient_checkpointed() -> Built:
    import jaxley as jx
    from jaxley.channels import HH

    cell = jx.Cell(jx.Branch(jx.Compartment(), ncomp=2), parents=[-1, 0, 0])
    cell.insert(HH())
    cell.branch(2).comp(1).record("v", verbose=False)
    cell.branch("all").make_trainable("radius", verbose=False)  # one radius per branch
    cell.make_trainable("HH_gNa", verbose=False)
    cell.make_trainable("HH_gK", verbose=False)
    params = [{name: np.asarray(value) for name, value in group.items()} for group in cell.get_parameters()]
    current = jx.step_current(i_delay=0.5, i_dur=2.0, i_amp=0.3, delta_t=_DT, t_max=_T_MAX)
    stimuli = cell.branch(0).comp(0).data_stimulate(current)

    def loss_and_grads(params: list[dict[str, jax.Array]], target: jax.Array) -> tuple[jax.Array, Any]:
        def loss(p: list[dict[str, jax.Array]]) -> jax.Array:
            # the 202 time steps in 2 checkpointed chunks of 101 (checkpoint_lengths must multiply to the count)
            voltages = jx.integrate(cell, params=p, data_stimuli=stimuli, delta_t=_DT, checkpoint_lengths=[2, 101])
            return jnp.mean((voltages[0, ::10] - target) ** 2)

        return jax.value_and_grad(loss)(params)

    target = np.linspace(-70.0, -60.0, 21).astype(np.float32)
    return Built(loss_and_grads, [params, (21,)], [params, target])


# ----------------------------------------------------------------------------- Brax
def _brax_rollout(env_name: str, backend: str, steps: int) -> Callable[[], Built]:
    """A builder: Brax's ``env_name`` on ``backend`` reset from a key and stepped through ``steps`` given actions
    under lax.scan; the observations, rewards and episode ends."""

    def build() -> Built:
        from brax import envs

        env = envs.get_environment(env_name, backend=backend)

        def rollout(key_data: jax.Array, actions: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
            def step(state: Any, action: jax.Array) -> tuple[Any, tuple[jax.Array, jax.Array, jax.Array]]:
                state = env.step(state, action)
                return state, (state.obs, state.reward, state.done)

            return jax.lax.scan(step, env.reset(jax.random.wrap_key_data(key_data)), actions)[1]

        actions = np.random.default_rng(len(env_name)).uniform(-1.0, 1.0, (steps, env.action_size)).astype(np.float32)
        return Built(rollout, [_KEY, (steps, env.action_size)], [_key_data(len(backend)), actions])

    return build


program("brax_inverted_pendulum_generalized", library="brax", rtol=1e-3, atol=1e-4,
        origin="Brax's training colab: envs.get_environment('inverted_pendulum', backend='generalized'), reset from a "
               "key, 8 steps under lax.scan")(_brax_rollout("inverted_pendulum", "generalized", 8))
program("brax_reacher_positional", library="brax", rtol=1e-3, atol=1e-4,
        origin="Brax's reacher on the positional (position-based dynamics) pipeline, 6 steps under lax.scan")(
    _brax_rollout("reacher", "positional", 6))
program("brax_hopper_spring", library="brax", rtol=1e-3, atol=1e-4,
        origin="Brax's hopper on the spring (impulse-based) pipeline, 6 steps under lax.scan")(
    _brax_rollout("hopper", "spring", 6))


@program("brax_ppo_policy_inference", library="brax",
         origin="Brax's PPO serving path: ppo_networks.make_ppo_networks(preprocess_observations_fn="
                "running_statistics.normalize), make_inference_fn(...)((normalizer, policy params)), the tanh-normal "
                "action sampled from a key and its deterministic mode")
def brax_ppo_policy_inference() -> Built:
    from brax.training.acme import running_statistics, specs
    from brax.training.agents.ppo import networks as ppo_networks

    observation_size, action_size = 11, 3
    networks = ppo_networks.make_ppo_networks(observation_size, action_size,
                                              preprocess_observations_fn=running_statistics.normalize)
    # the normalizer's statistics as training leaves them (a fresh one is mean 0, std 1)
    normalizer = running_statistics.init_state(specs.Array((observation_size,), jnp.dtype("float32")))
    seen = 3.0 * np.random.default_rng(7).standard_normal((64, observation_size)).astype(np.float32) + 1.0
    normalizer = running_statistics.update(normalizer, jnp.asarray(seen))
    params = (normalizer, networks.policy_network.init(jax.random.key(8)))
    make_policy = ppo_networks.make_inference_fn(networks)
    sampled, deterministic = make_policy(params), make_policy(params, deterministic=True)

    def act(observations: jax.Array, key_data: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        action, extras = sampled(observations, jax.random.wrap_key_data(key_data))
        return action, extras["log_prob"], deterministic(observations, jax.random.wrap_key_data(key_data))[0]

    observations = 3.0 * np.random.default_rng(9).standard_normal((4, observation_size)).astype(np.float32) + 1.0
    return Built(act, [("B", observation_size), _KEY], [observations, _key_data(10)])


@program("brax_ppo_loss_gradient", library="brax", rtol=1e-3, atol=1e-5,
         origin="Brax's PPO learner step: jax.value_and_grad(losses.compute_ppo_loss, has_aux=True) over the policy "
                "and value networks' parameters on a [B, T] batch of Transitions (GAE by a reverse lax.scan, clipped "
                "ratio, tanh-normal log-probabilities and entropy from a key)")
def brax_ppo_loss_gradient() -> Built:
    from brax.training import types as brax_types
    from brax.training.acme import running_statistics, specs
    from brax.training.agents.ppo import losses
    from brax.training.agents.ppo import networks as ppo_networks

    observation_size, action_size, batch, steps = 6, 2, 4, 5
    networks = ppo_networks.make_ppo_networks(observation_size, action_size,
                                              preprocess_observations_fn=running_statistics.normalize,
                                              policy_hidden_layer_sizes=(16, 16), value_hidden_layer_sizes=(16, 16))
    normalizer = running_statistics.init_state(specs.Array((observation_size,), jnp.dtype("float32")))
    params = {"policy": networks.policy_network.init(jax.random.key(1)),
              "value": networks.value_network.init(jax.random.key(2))}
    rng = np.random.default_rng(12)

    def normal(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    rollout = {"observation": normal(batch, steps, observation_size), "action": normal(batch, steps, action_size),
               "reward": normal(batch, steps), "discount": np.ones((batch, steps), np.float32),
               "next_observation": normal(batch, steps, observation_size),
               "truncation": np.zeros((batch, steps), np.float32), "raw_action": normal(batch, steps, action_size),
               "log_prob": normal(batch, steps) - 2.0, "distribution_params": normal(batch, steps, 2 * action_size)}

    def loss_and_grads(params: dict[str, Any], rollout: dict[str, jax.Array], key_data: jax.Array) -> Any:
        transitions = brax_types.Transition(
            observation=rollout["observation"], action=rollout["action"], reward=rollout["reward"],
            discount=rollout["discount"], next_observation=rollout["next_observation"],
            extras={"state_extras": {"truncation": rollout["truncation"]},
                    "policy_extras": {name: rollout[name] for name in ("raw_action", "log_prob", "distribution_params")}})
        network_params = losses.PPONetworkParams(policy=params["policy"], value=params["value"])
        (loss, _), grads = jax.value_and_grad(losses.compute_ppo_loss, has_aux=True)(
            network_params, normalizer, transitions, jax.random.wrap_key_data(key_data), networks)
        return loss, grads

    params = jax.tree.map(np.asarray, params)
    return Built(loss_and_grads, [params, rollout, _KEY], [params, rollout, _key_data(13)])
