"""Training under Keras' JAX backend, for GPU machines that have JAX but no TensorFlow.

The run directory is the TensorFlow trainer's (``gan.trainer``), written through the same
``gan.rundir.RunDir``: the same ``options.json``, checkpoints in the same format (``gan.checkpoint``,
the same Keras variables in the same order), ``history.jsonl``, ``loss.png`` and sample grids, so
``avatarbot-train evaluate``/``export`` read it and either trainer resumes the other's run. The
networks are ``gan.networks``' own; the step is ``gan.model.GAN.train_step`` written as one pure
function, and ``lax.scan`` runs a block of steps per call with the whole data set on the device, so
the accelerator is not left waiting on Python.

Supported: the improved preset with either loss, DiffAugment, the R1 penalty, the generator EMA,
frozen layers, bfloat16 and the learning-rate schedule. The seed preset (its dropout layer is
TensorFlow code), style heads and the few-shot penalties (``g_anchor``, ``g_hist``) train under
TensorFlow only. There are no TensorBoard logs here, as they are written with TensorFlow.

Keras picks its backend once, when first imported: set ``KERAS_BACKEND=jax`` before that
(``avatarbot-train train --backend jax`` does).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from gan.config import GANConfig, TrainOptions, parse_policy
from gan.data import load_folder
from gan.networks import build_networks
from gan.rundir import RunDir
from gan.runtime import cpu_model
from gan.schedule import LearningRate
from gan.styles import load_pretrained

log = logging.getLogger(__name__)

# Steps per compiled call (fewer at checkpoint, epoch and log boundaries).
BLOCK = 50


def check_supported(config: GANConfig, strategy: str = "default") -> None:
    """Refuse, with the reason, a run this trainer cannot train faithfully."""
    if keras.backend.backend() != "jax":
        raise ValueError(f"Keras runs on the {keras.backend.backend()} backend here: set KERAS_BACKEND=jax "
                         "before Keras is first imported")
    unsupported = [name for name, on in (("the seed preset", config.preset == "seed"),
                                         ("a style head (g_head)", config.g_head > 0),
                                         ("g_anchor", config.g_anchor > 0), ("g_hist", config.g_hist > 0)) if on]
    if unsupported:
        raise ValueError(f"the JAX backend does not train {', '.join(unsupported)}; use the TensorFlow backend")
    if strategy != "default":
        raise ValueError("the JAX backend trains on one device: use strategy 'default'")


def use_compilation_cache() -> None:
    """Keep XLA's compiled programs under ``cache_dir("jax")`` (unless ``JAX_COMPILATION_CACHE_DIR``
    names another place): a resumed run, or a second run of the same shapes, loads the training
    block and the initialisers instead of compiling them again."""
    import jax

    from gan.runtime import cache_dir

    if not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", str(cache_dir("jax")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


# -- DiffAugment, as gan.augment does it -----------------------------------------------------------
def diff_augment(key, x, policy: str):
    """The policy's transforms (``gan.augment``'s, with the same ranges) on images in [-1, 1]."""
    import jax
    import jax.numpy as jnp

    n, h, w, _ = x.shape
    for name in parse_policy(policy):
        if name == "color":
            key, kb, ks, kc = jax.random.split(key, 4)
            x = x + (jax.random.uniform(kb, (n, 1, 1, 1), x.dtype) - 0.5)
            mean = jnp.mean(x, axis=3, keepdims=True)
            x = (x - mean) * (jax.random.uniform(ks, (n, 1, 1, 1), x.dtype) * 2) + mean
            mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
            x = (x - mean) * (jax.random.uniform(kc, (n, 1, 1, 1), x.dtype) + 0.5) + mean
        elif name == "translation":  # shift by up to 1/8 of the size, zero fill
            key, ky, kx = jax.random.split(key, 3)
            sh, sw = int(h * 0.125 + 0.5), int(w * 0.125 + 0.5)
            yy = jnp.arange(h)[None, :, None] + jax.random.randint(ky, (n, 1, 1), -sh, sh + 1)
            xx = jnp.arange(w)[None, None, :] + jax.random.randint(kx, (n, 1, 1), -sw, sw + 1)
            valid = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            out = x[jnp.arange(n)[:, None, None], jnp.clip(yy, 0, h - 1), jnp.clip(xx, 0, w - 1)]
            x = out * valid[..., None].astype(x.dtype)
        elif name == "cutout":  # one square of half the size, centred anywhere, set to zero
            key, ky, kx = jax.random.split(key, 3)
            ch, cw = int(h * 0.5 + 0.5), int(w * 0.5 + 0.5)
            cy = jax.random.randint(ky, (n, 1, 1), 0, h + (1 - ch % 2))
            cx = jax.random.randint(kx, (n, 1, 1), 0, w + (1 - cw % 2))
            inside = (jnp.abs(jnp.arange(h)[None, :, None] - cy) * 2 < ch) & \
                     (jnp.abs(jnp.arange(w)[None, None, :] - cx) * 2 < cw)
            x = x * (~inside)[..., None].astype(x.dtype)
    return x


@dataclass
class Networks:
    """The Keras objects of a run, named as ``gan.model.GAN`` names them, so ``gan.checkpoint``
    saves and loads them in the same format."""

    config: GANConfig
    generator: keras.Model
    discriminator: keras.Model
    ema_generator: keras.Model | None
    g_optimizer: keras.optimizers.Optimizer
    d_optimizer: keras.optimizers.Optimizer

    @classmethod
    def build(cls, config: GANConfig) -> "Networks":
        generator, discriminator, ema = build_networks(config)
        g_opt = keras.optimizers.Adam(config.g_lr, beta_1=config.beta1, beta_2=config.beta2)
        d_opt = keras.optimizers.Adam(config.d_lr, beta_1=config.beta1, beta_2=config.beta2)
        nets = cls(config, generator, discriminator, ema, g_opt, d_opt)
        nets.build_all()
        return nets

    def build_all(self) -> None:
        if not self.g_optimizer.built:
            self.g_optimizer.build(self.generator.trainable_variables)
        if not self.d_optimizer.built:
            self.d_optimizer.build(self.discriminator.trainable_variables)


def _lr_index(optimizer: keras.optimizers.Optimizer) -> int:
    for i, v in enumerate(optimizer.variables):
        if v.name == "learning_rate":
            return i
    raise RuntimeError("the optimizer keeps no learning-rate variable")


def _iterations_index(optimizer: keras.optimizers.Optimizer) -> int:
    """Where the optimizer's step counter sits in its variables (and in the state's copy of them)."""
    return next(i for i, v in enumerate(optimizer.variables) if v is optimizer.iterations)


class JaxTrainer:
    """Runs (or resumes) the training described by ``run_dir/options.json``, as ``gan.trainer.Trainer``
    does, under Keras' JAX backend."""

    def __init__(self, run_dir: str | os.PathLike, options: TrainOptions | None = None,
                 progress_bar: bool = True, log_every: int = 50) -> None:
        self.run_dir = RunDir(run_dir)
        if options is None:
            options = self.run_dir.load_options()
        check_supported(options.model, options.strategy)
        self.options = options
        self.progress_bar = progress_bar
        self.log_every = log_every
        self.nets: Networks | None = None
        self.state: dict[str, Any] | None = None
        self.last_metrics: dict = {}

    # -- setup ---------------------------------------------------------------------------------
    def setup(self) -> int:
        """Build the networks (resuming from the newest checkpoint); returns the starting step."""
        import jax

        use_compilation_cache()
        o = self.options
        device = jax.devices()[0]
        hardware = (f"{cpu_model()}, {os.cpu_count()} cores (JAX)" if device.platform == "cpu"
                    else f"{device.device_kind} ({device.platform.upper()}, JAX)")
        self.run_dir.start(o, hardware)
        keras.mixed_precision.set_global_policy("mixed_bfloat16" if o.mixed_precision else "float32")
        keras.utils.set_random_seed(o.seed)
        self.nets = Networks.build(o.model)
        if o.init_from and self.run_dir.latest_checkpoint() is None:
            load_pretrained(self.nets, o.init_from)
        self.run_dir.resume(self.nets)
        self.state = self._pull_state()
        return self.step

    @property
    def step(self) -> int:
        """The step the networks have trained to."""
        if self.state is not None:
            return int(self.state["g_opt"][self._g_iter])
        return int(self.nets.g_optimizer.iterations.numpy())

    # -- state: Keras variables <-> arrays -------------------------------------------------------
    def _pull_state(self) -> dict[str, Any]:
        n = self.nets
        g = n.generator

        def values(variables: list) -> list:
            return [v.value for v in variables]

        # The EMA follows the live generator's trainable variables, paired with the EMA model's
        # weights by position (same build code, same order); its BatchNorm statistics are the live
        # generator's, recalibrated before use.
        self._ema_pairs = self._ema_pairing()
        ema_t: list = []
        if n.ema_generator is not None:
            ema_t = values(g.trainable_variables)
            for value, (kind, i) in zip(values(n.ema_generator.weights), self._ema_pairs):
                if kind == "t":
                    ema_t[i] = value
        self._g_iter = _iterations_index(n.g_optimizer)
        return {
            "g_t": values(g.trainable_variables), "g_n": values(g.non_trainable_variables),
            "d_t": values(n.discriminator.trainable_variables), "d_n": values(n.discriminator.non_trainable_variables),
            "g_opt": values(n.g_optimizer.variables), "d_opt": values(n.d_optimizer.variables), "ema_t": ema_t,
        }

    def _ema_pairing(self) -> list[tuple[str, int]]:
        g = self.nets.generator
        where = {id(v): ("t", i) for i, v in enumerate(g.trainable_variables)}
        where.update({id(v): ("n", i) for i, v in enumerate(g.non_trainable_variables)})
        return [where[id(v)] for v in g.weights]

    def _push_state(self) -> None:
        """Write the arrays back into the Keras variables (before a checkpoint or a sample grid)."""
        n, s = self.nets, self.state
        for variables, values in ((n.generator.trainable_variables, s["g_t"]),
                                  (n.generator.non_trainable_variables, s["g_n"]),
                                  (n.discriminator.trainable_variables, s["d_t"]),
                                  (n.discriminator.non_trainable_variables, s["d_n"]),
                                  (n.g_optimizer.variables, s["g_opt"]), (n.d_optimizer.variables, s["d_opt"])):
            for var, value in zip(variables, values):
                var.assign(value)
        if n.ema_generator is not None:
            for var, (kind, i) in zip(n.ema_generator.weights, self._ema_pairs):
                var.assign((s["ema_t"] if kind == "t" else s["g_n"])[i])

    # -- the step --------------------------------------------------------------------------------
    def _make_block(self):
        """A compiled function running a block of steps: (state, xs) -> (state, metrics per step)."""
        import jax
        import jax.numpy as jnp

        n, c, o = self.nets, self.options.model, self.options
        G, D = n.generator, n.discriminator
        size, margin, batch = c.image_size, o.crop_margin, o.batch_size
        g_lr_i, d_lr_i = _lr_index(n.g_optimizer), _lr_index(n.d_optimizer)
        policy, r1_weight, r1_every, decay = c.diffaugment, c.d_r1, c.d_r1_every, c.ema_decay
        d_iter = _iterations_index(n.d_optimizer)
        d_training = c.d_batch_stats
        d_loss_fn, g_loss_fn = _losses(c.loss)

        def batch_from(data, idx, key):
            k_crop, k_flip = jax.random.split(key)
            x = data[idx]
            if margin:  # integer offsets: a plain crop, as gan.data does it
                off = jax.random.randint(k_crop, (batch, 2), 0, margin + 1)
                x = jax.vmap(lambda img, oy, ox: jax.lax.dynamic_slice(img, (oy, ox, 0), (size, size, 3)))(
                    x, off[:, 0], off[:, 1])
            x = x.astype(jnp.float32)
            flip = jax.random.uniform(k_flip, (batch, 1, 1, 1)) < 0.5
            x = jnp.where(flip, x[:, :, ::-1], x)
            return x / 127.5 - 1.0

        def losses(g_t, d_t, g_n, d_n, real, key, r1_due):
            k_z, k_ar, k_af = jax.random.split(key, 3)
            z = jax.random.normal(k_z, (batch, c.latent_dim))
            fake, g_n = G.stateless_call(g_t, g_n, z, training=True)
            real_in = diff_augment(k_ar, real, policy) if policy else real
            fake_in = diff_augment(k_af, fake, policy) if policy else fake

            def real_logit_sum(x, d_n):
                logits, d_n = D.stateless_call(d_t, d_n, x, training=d_training)
                return jnp.sum(logits), (logits, d_n)

            def penalised(d_n):  # gamma/2 |grad_x D(x)|^2 on the (augmented) real batch
                slopes, (logits, d_n) = jax.grad(real_logit_sum, has_aux=True)(real_in, d_n)
                return logits, d_n, 0.5 * r1_weight * r1_every * jnp.sum(jnp.square(slopes), axis=(1, 2, 3))

            def plain(d_n):
                _, (logits, d_n) = real_logit_sum(real_in, d_n)
                return logits, d_n, jnp.zeros((batch,), logits.dtype)

            if r1_weight <= 0:
                real_logits, d_n, r1 = plain(d_n)
            elif r1_every == 1:
                real_logits, d_n, r1 = penalised(d_n)
            else:  # lazy, as GAN._real_logits_and_r1
                real_logits, d_n, r1 = jax.lax.cond(r1_due, penalised, plain, d_n)
            fake_logits, d_n = D.stateless_call(d_t, d_n, fake_in, training=d_training)
            d_per_example = d_loss_fn(real_logits, fake_logits) + r1
            g_per_example = g_loss_fn(fake_logits)
            scores = (jnp.mean(jax.nn.sigmoid(real_logits)), jnp.mean(jax.nn.sigmoid(fake_logits)))
            return (jnp.mean(d_per_example), jnp.mean(g_per_example)), (g_n, d_n, scores)

        def step(s, xs):
            data, idx, key, g_lr, d_lr = xs
            k_batch, k_loss = jax.random.split(key)
            real = batch_from(data, idx, k_batch)
            r1_due = s["d_opt"][d_iter] % r1_every == 0
            # One forward pass serves both updates, as in GAN.train_step: each loss is
            # differentiated with respect to its own network only.
            (d_loss, g_loss), pullback, (g_n, d_n, (d_real, d_fake)) = jax.vjp(
                lambda g_t, d_t: losses(g_t, d_t, s["g_n"], s["d_n"], real, k_loss, r1_due), s["g_t"], s["d_t"],
                has_aux=True)
            _, d_grads = pullback((jnp.ones_like(d_loss), jnp.zeros_like(g_loss)))
            g_grads, _ = pullback((jnp.zeros_like(d_loss), jnp.ones_like(g_loss)))
            g_opt = list(s["g_opt"])
            d_opt = list(s["d_opt"])
            g_opt[g_lr_i] = g_lr.astype(g_opt[g_lr_i].dtype)
            d_opt[d_lr_i] = d_lr.astype(d_opt[d_lr_i].dtype)
            d_t, d_opt = n.d_optimizer.stateless_apply(d_opt, d_grads, s["d_t"])
            g_t, g_opt = n.g_optimizer.stateless_apply(g_opt, g_grads, s["g_t"])
            ema_t = [decay * e + (1.0 - decay) * w for e, w in zip(s["ema_t"], g_t)]
            new = {"g_t": g_t, "g_n": g_n, "d_t": d_t, "d_n": d_n, "g_opt": g_opt, "d_opt": d_opt, "ema_t": ema_t}
            return new, jnp.stack([d_loss, g_loss, d_real, d_fake])

        def block(s, data, idx, keys, g_lrs, d_lrs):
            return jax.lax.scan(lambda st, x: step(st, (data,) + x), s, (idx, keys, g_lrs, d_lrs))

        # No buffer donation: a Ctrl-C or SIGTERM can land after a block returns and before its result
        # is kept, and the state from before that block must then still be whole to be checkpointed.
        return jax.jit(block)

    # -- outputs -------------------------------------------------------------------------------
    def save(self) -> Path:
        """Checkpoint the current step (once: a second call at the same step is free)."""
        self._push_state()
        return self.run_dir.save_checkpoint(self.nets)

    def write_samples(self) -> Path:
        """The fixed sample seeds' grid from the generator that would be exported."""
        self._push_state()
        return self.run_dir.write_samples(self.nets)[0]

    def _end_of_epoch(self) -> None:
        self.save()
        self.write_samples()
        self.run_dir.plot_losses()

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> str:
        """Train until ``options.steps``; returns ``"done"`` or ``"interrupted"`` (Ctrl-C/SIGTERM).

        Either way the newest state is in a checkpoint, so running again resumes it."""
        import jax
        import jax.numpy as jnp

        start = self.setup()
        o = self.options
        if self.run_dir.finished(start):
            return "done"
        images, stats = load_folder(o.data, o.model.image_size + o.crop_margin, o.max_images)
        log.info("data: %s", stats.summary())
        if len(images) < o.batch_size:
            raise ValueError(f"{len(images)} usable images, fewer than one batch of {o.batch_size}")
        data = jnp.asarray(images)  # uint8, on the device once
        block_fn = self._make_block()
        schedules = [LearningRate(base, o.lr_warmup_steps, o.lr_decay_start, o.steps)
                     for base in (o.model.g_lr, o.model.d_lr)]

        def train(bar) -> None:
            # Epochs of the data in a fresh order each, seeded by the run seed and the starting step.
            rng = np.random.default_rng([o.seed, start])
            order = np.empty(0, np.int64)
            key = jax.random.PRNGKey(o.seed * 1_000_003 + start)
            step = start
            while step < o.steps:
                boundaries = [o.steps, (step // o.checkpoint_every + 1) * o.checkpoint_every,
                              (step // o.steps_per_epoch + 1) * o.steps_per_epoch,
                              (step // self.log_every + 1) * self.log_every, step + BLOCK]
                count = min(boundaries) - step
                while len(order) < count * o.batch_size:
                    order = np.concatenate([order, rng.permutation(len(images))])
                idx, order = order[:count * o.batch_size].reshape(count, o.batch_size), order[count * o.batch_size:]
                key, sub = jax.random.split(key)
                lrs = [np.array([s(step + i) for i in range(count)], np.float32) for s in schedules]
                self.state, metrics = block_fn(self.state, data, jnp.asarray(idx), jax.random.split(sub, count),
                                               *map(jnp.asarray, lrs))
                metrics = np.asarray(metrics).mean(axis=0)
                step += count
                self.last_metrics = dict(zip(("d_loss", "g_loss", "d_real", "d_fake"), map(float, metrics)))
                if not np.isfinite(metrics).all():
                    raise FloatingPointError(f"losses are not finite at step {step}: {self.last_metrics}")
                if bar is not None:
                    bar.update(count * o.batch_size)
                    bar.set_postfix(step=step, d=f"{metrics[0]:.3f}", g=f"{metrics[1]:.3f}")
                if step % self.log_every == 0 or step >= o.steps:
                    self.run_dir.record(step, self.last_metrics)
                if step % o.checkpoint_every == 0:
                    self.save()
                if step % o.steps_per_epoch == 0 or step >= o.steps:
                    self._end_of_epoch()

        return self.run_dir.session(start, train, self.save, self.progress_bar)


def _losses(name: str):
    """Per-example (d_loss, g_loss) functions of ``gan.losses``, in jax.numpy."""
    import jax
    import jax.numpy as jnp

    def bce(logits, target):  # sigmoid cross-entropy from logits, as tf.nn computes it
        return jnp.maximum(logits, 0) - logits * target + jnp.log1p(jnp.exp(-jnp.abs(logits)))

    if name == "bce":
        return (lambda r, f: jnp.reshape(bce(r, 1.0) + bce(f, 0.0), (-1,)),
                lambda f: jnp.reshape(bce(f, 1.0), (-1,)))
    if name == "hinge":
        return (lambda r, f: jnp.reshape(jax.nn.relu(1.0 - r) + jax.nn.relu(1.0 + f), (-1,)),
                lambda f: jnp.reshape(-f, (-1,)))
    raise ValueError(f"unknown loss {name!r}")
