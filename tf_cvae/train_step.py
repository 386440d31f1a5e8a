"""The train step: one `tf.function` that computes the ELBO and the critic loss
together (objective.py), clips their gradients (here) and applies the update
(aggressive.py drives it for He et al.'s aggressive training).

A TrainStep is a library object: build it from a VAE, critics and optimizers,
call it with batches. Tests call it directly.
"""

import keras
import tensorflow as tf

from tf_cvae import critics as critics_lib
from tf_cvae import errors
from tf_cvae import metrics
from tf_cvae import objective as objective_lib
from tf_cvae import replicas


def _unique(variables) -> list:
  """Variables in order, each once (the hybrid critic shares the encoder's)."""
  return list({id(variable): variable for variable in variables}.values())


class TrainStep:
  """One optimizer step on the negative ELBO plus the critic losses.

  A call returns scalar tensors (nats): loss, rec, kl, mi (batch estimate),
  infonce_bound / model_infonce_bound with critics, the global gradient
  norms before clipping (elbo_grad_norm, critic_grad_norm), critic_term
  (lambda times the critics' losses), critic_lambda (as used, warmed up),
  critic_lambda_effective (lambda times the share of the critic's gradient
  its clip kept), with a multiplier critic_bound_average and
  critic_constraint_active, and the nonfinite bitmask. `update`: "all",
  "encoder" (encoder and inference critic, with `encoder_optimizer`: the
  aggressive inner loop) or "decoder" (decoder and model critic). The
  ELBO's and the critics' gradients are clipped apart (`clip_norm`,
  `critic_clip_norm`; None or 0: no clip) and summed; `critic_optimizer`
  updates the critics' own parameters, unclipped. Under a `strategy` of R
  replicas (networks and optimizers built in its scope) a call takes the
  batches of replicas.distribute_batches and makes the single-device update.
  docs/design.md says why the clips are apart and how lambda moves.
  """

  def __init__(self, vae, critic, optimizer: keras.optimizers.Optimizer,
               objective_config: objective_lib.ObjectiveConfig, seed: int = 0,
               jit_compile: bool = False, model_critic=None,
               num_negatives: int = 0,
               encoder_optimizer: keras.optimizers.Optimizer | None = None,
               critic_optimizer: keras.optimizers.Optimizer | None = None,
               strategy: tf.distribute.Strategy | None = None,
               clip_norm: float | None = None,
               critic_clip_norm: float | None = None):
    if any(o is not None and o.global_clipnorm
           for o in (optimizer, encoder_optimizer)):
      raise errors.InputError("pass clip_norm to TrainStep, not the "
                              "optimizer's global_clipnorm (it would clip again)")
    self.with_critic = objective_lib.has_critic_term(
        objective_config, critic, model_critic)
    self.clip_norm = clip_norm
    self.critic_clip_norm = (clip_norm if critic_clip_norm is None
                             else critic_clip_norm)
    self.vae, self.critic, self.model_critic = vae, critic, model_critic
    self.strategy = strategy or tf.distribute.get_strategy()
    self.num_replicas = self.strategy.num_replicas_in_sync
    jit_compile = jit_compile and self.num_replicas == 1
    self.optimizer, self.encoder_optimizer = optimizer, encoder_optimizer
    self.critic_optimizer, self._critic_own = critic_optimizer, set()
    self.objective_config, self.seed = objective_config, seed
    self.num_negatives, self.jit_compile = num_negatives, jit_compile
    self.negatives, self._groups, self._book = None, None, None
    # Before any restore: the rate the multiplier's step is scaled against.
    self._initial_lr = float(tf.convert_to_tensor(optimizer.learning_rate))
    with self.strategy.scope():   # lambda: fixed, or the multiplier's
      self.critic_weight = (objective_lib.CriticWeight(objective_config) if (
          critic is not None or model_critic is not None) else None)
    self.multiplier = self.critic_weight and self.critic_weight.multiplier
    self._steps = self._trace()

  def _trace(self) -> dict:
    self._traced = set()        # updates traced for relaxed shapes
    return {update: tf.function(
        lambda batch, update=update: self._step(batch, update),
        jit_compile=self.jit_compile, reduce_retracing=True)
            for update in ("all", "encoder", "decoder")}

  def book_with(self, book) -> None:
    """Calls book(outputs) inside every later "all" and "decoder" step's
    tf.function, after its update: device-side bookkeeping (the training
    loop's counters) with no extra call. None: no more."""
    self._book = book
    self._steps = self._trace()     # steps traced before did not call it

  def build(self, batch: dict) -> None:
    """Creates every variable (networks, queue, optimizer slots) from a batch."""
    with self.strategy.scope():
      self._build(batch)

  def _build(self, batch: dict) -> None:
    seed = tf.constant([0, 0])
    terms = objective_lib.forward(
        self.vae, self.critic, batch, seed, training=False,
        model_critic=self.model_critic,
        model_samples=self._model_samples(batch, seed))
    if self.num_negatives and self.critic is not None:
      self.negatives = critics_lib.NegativeQueue(
          self.num_negatives, int(terms.critic.x_side.shape[-1]))
    def trainable(*modules):
      return _unique(v for m in modules if m is not None
                     for v in m.trainable_variables)
    inference = trainable(*self.vae.inference_layers, self.critic)
    generative = [v for v in trainable(self.vae.decoder, self.model_critic)
                  if id(v) not in {id(u) for u in inference}]
    self._groups = {"all": _unique(inference + generative),
                    "encoder": inference, "decoder": generative}
    if self.critic_optimizer is not None:
      vae_ids = {id(v) for v in self.vae.trainable_variables}
      own = [v for v in trainable(self.critic, self.model_critic)
             if id(v) not in vae_ids]
      self._critic_own = {id(v) for v in own}
      if own:
        self.critic_optimizer.build(own)
      else:             # the self critic has no parameters of its own
        self.critic_optimizer = None
    self.optimizer.build(self._split(self._groups["all"])[0])
    if self.encoder_optimizer is not None:
      self.encoder_optimizer.build(self._split(inference)[0])

  def _split(self, variables):
    """(variables of the main optimizer, critics' own variables)."""
    return ([v for v in variables if id(v) not in self._critic_own],
            [v for v in variables if id(v) in self._critic_own])

  def _model_samples(self, batch, seed):
    """The model critic's (z, x) draw, outside the tape; None without it."""
    if self.model_critic is None:
      return None
    if replicas.num_replicas() > 1:     # each replica its own prior draw
      seed = tf.random.experimental.stateless_fold_in(seed,
                                                      replicas.replica_id())
    return objective_lib.draw_model_samples(self.vae, batch, seed)

  @property
  def iterations(self) -> int:
    """Optimizer steps taken (a Python int, also for mirrored variables)."""
    return int(tf.convert_to_tensor(self.optimizer.iterations))

  @property
  def learning_rate(self) -> float:
    """The model optimizer's current learning rate (a Python float)."""
    return float(tf.convert_to_tensor(self.optimizer.learning_rate))

  @property
  def variables(self) -> list:
    """All trained variables, each once."""
    return self._groups["all"]

  def _step(self, batch, update):
    """One update on the batch (directly, or on each replica's slice), then
    the book_with function's bookkeeping."""
    if self.num_replicas == 1:
      outputs = self._train_step(batch, update)
    else:
      outputs = {k: self.strategy.reduce(tf.distribute.ReduceOp.MEAN, v,
                                         axis=None) for k, v in
                 self.strategy.run(lambda local: self._train_step(
                     local, update), args=(batch,)).items()}
    if self._book is not None and update != "encoder":
      self._book(outputs)
    return outputs

  def _train_step(self, batch, update):
    step = self.optimizer.iterations
    seed = tf.stack([tf.constant(self.seed, tf.int32),
                     tf.cast(step, tf.int32)])
    if update == "encoder":   # inner-loop steps must not repeat outer seeds
      seed = tf.random.experimental.stateless_fold_in(
          tf.random.experimental.stateless_fold_in(seed, 3),
          tf.cast(self.encoder_optimizer.iterations, tf.int32))
    model_samples = self._model_samples(batch, seed)
    with tf.GradientTape(persistent=self.with_critic) as tape:
      terms = objective_lib.forward(
          self.vae, self.critic, batch, seed, training=True,
          model_critic=self.model_critic, negatives=self.negatives,
          model_samples=model_samples)
      losses = objective_lib.loss(terms, self.objective_config, step,
                                  self.critic_weight)
      loss = losses.total
      # Optimizers sum the replicas' gradients: each takes 1/R of its loss.
      shares = [p / replicas.num_replicas()
                for p in ([losses.elbo, losses.critic_term] if self.with_critic
                          else [loss])]
    main, own = self._split(self._groups[update])
    parts = [tape.gradient(share, main + own) for share in shares]
    clip_norms = [self.clip_norm, self.critic_clip_norm][:len(parts)]
    optimizer = self.encoder_optimizer if update == "encoder" else (
        self.optimizer)
    gradients, norms = combine_parts(parts, clip_norms, len(main))
    # Where the critic's clip binds, lambda * gradient is cut back to the
    # clip: the effective weight is lambda * clip / norm, and more lambda
    # would change nothing, so the multiplier's integral may not rise.
    critic_scale = (clip_scale(norms[1], self.critic_clip_norm)
                    if self.with_critic else tf.ones([]))
    clipped = critic_scale < 1.0
    effective_weight = losses.critic_weight * critic_scale
    nonfinite = _nonfinite_mask(terms, gradients)

    def update_fn(gradients, x_side):
      optimizer.apply_gradients(zip(gradients[:len(main)], main))
      if own:
        self.critic_optimizer.apply_gradients(zip(gradients[len(main):], own))
      if self.negatives is not None:
        self.negatives.push(x_side)
      if self.multiplier is not None and update != "encoder":
        self.multiplier.update(
            replicas.mean(terms.bound),
            lr_scale=self.optimizer.learning_rate / self._initial_lr,
            saturated=clipped)
    # A step with a non-finite term or gradient changes nothing.
    replicas.apply_if(tf.equal(nonfinite, 0), update_fn, gradients,
                      terms.critic.x_side if terms.critic else tf.zeros([0]))
    # The batch MI estimate over the global batch (as on one device).
    mi_inputs = [tf.stop_gradient(replicas.gather(t))
                 for t in (terms.mu, terms.logvar, terms.z)]
    out = {"loss": loss, "rec": -tf.reduce_mean(terms.log_likelihood),
           "kl": tf.reduce_mean(terms.kl),
           "mi": metrics.mutual_information(*mi_inputs)}
    if terms.critic is not None:
      out["infonce_bound"] = terms.critic.bound
    if terms.model_critic is not None:
      out["model_infonce_bound"] = terms.model_critic.bound
    out.update(self.multiplier.state() if self.multiplier else {})
    if self.critic_weight is not None:   # lambda as this step used it
      out.update(critic_lambda=losses.critic_weight,
                 critic_lambda_effective=effective_weight)
    out.update(elbo_grad_norm=norms[0],
               critic_grad_norm=norms[1] if self.with_critic else tf.zeros([]),
               critic_term=losses.critic_term, nonfinite=nonfinite)
    return out

  def __call__(self, batch: dict, update: str = "all") -> dict:
    """One step on `batch`: a dict of [K, ...] tensors with one replica;
    with several, an element of replicas.distribute_batches (the strategy
    must have built the step: build takes a global batch). Raises
    errors.TrainingError when another worker of the strategy is gone."""
    if self._groups is None:
      if self.num_replicas > 1:
        raise errors.InputError("build the step on a global batch before "
                                "stepping it on per-replica batches")
      self.build(batch)
    step = self._steps[update]
    if update not in self._traced:
      # Exact-length text batches vary in length and size: one trace for
      # them all, not one at the first shape and another once they relax.
      step.get_concrete_function(relaxed_spec(batch))
      self._traced.add(update)
    try:
      return step(batch)
    except (tf.errors.UnavailableError, tf.errors.AbortedError) as error:
      if not isinstance(self.strategy,
                        tf.distribute.MultiWorkerMirroredStrategy):
        raise
      raise errors.lost_worker(error) from None


def relaxed_spec(batch: dict) -> dict:
  """The type specs of a batch (tensors, or a strategy's per-replica
  values) with the batch size open, and the length of integer [K, T]
  tensors (token ids)."""
  def relax(spec):
    if not isinstance(spec, tf.TensorSpec):     # per replica: each relaxed
      return type(spec)(*map(relax, spec._value_specs))  # pylint: disable=protected-access
    shape = spec.shape.as_list()
    if shape:
      shape[0] = None
      if len(shape) == 2 and spec.dtype.is_integer:
        shape[1] = None
    return tf.TensorSpec(shape, spec.dtype)
  return {k: relax(tf.type_spec_from_value(v)) for k, v in batch.items()}


# Gradient lists: one entry per variable, a dense tensor, a tf.IndexedSlices
# (embeddings; an index may repeat) or None (no path).


def _dense_rows(gradient):
  """An IndexedSlices as the dense tensor it stands for (repeated indices
  summed; a scatter XLA compiles, unlike tf.unique); others unchanged."""
  if not isinstance(gradient, tf.IndexedSlices):
    return gradient
  return tf.math.unsorted_segment_sum(gradient.values, gradient.indices,
                                      gradient.dense_shape[0])


def global_norm(gradients: list) -> tf.Tensor:
  """The L2 norm of all gradients as one vector (as if dense), float32
  scalar; 0 when every entry is None."""
  present = [_dense_rows(g) for g in gradients if g is not None]
  if not present:
    return tf.zeros([])
  return tf.sqrt(tf.add_n([tf.reduce_sum(tf.square(g)) for g in present]))


def scaled(gradient, scale):
  """gradient * scale for dense gradients, IndexedSlices (embeddings), None."""
  if gradient is None:
    return None
  if isinstance(gradient, tf.IndexedSlices):
    return tf.IndexedSlices(gradient.values * scale, gradient.indices,
                            gradient.dense_shape)
  return gradient * scale


def clip_scale(norm: tf.Tensor, clip_norm: float | None) -> tf.Tensor:
  """min(1, clip_norm / norm), the factor a clip puts on gradients of global
  norm `norm` (float32 scalar): 1 without a clip (None or 0), NaN for a
  non-finite norm."""
  if not clip_norm:
    return tf.ones([])
  scale = clip_norm / tf.maximum(norm, clip_norm)
  return scale + (norm - norm)       # NaN when the norm is inf or NaN


def clip(gradients: list, clip_norm: float | None):
  """(gradients scaled to global norm <= clip_norm, their norm before).

  No clip_norm (None or 0): unchanged. A non-finite norm makes every
  gradient NaN (the step's non-finite mask then skips it).
  """
  norm = global_norm(gradients)
  if not clip_norm:
    return list(gradients), norm
  scale = clip_scale(norm, clip_norm)
  return [scaled(g, scale) for g in gradients], norm


def add(a, b):
  """a + b for gradients of one variable; None is zero, and two
  IndexedSlices stay IndexedSlices (their rows concatenated)."""
  if a is None:
    return b
  if b is None:
    return a
  if isinstance(a, tf.IndexedSlices) and isinstance(b, tf.IndexedSlices):
    return tf.IndexedSlices(tf.concat([a.values, b.values], 0),
                            tf.concat([a.indices, b.indices], 0),
                            a.dense_shape)
  return tf.convert_to_tensor(a) + tf.convert_to_tensor(b)


def combine_parts(parts: list, clip_norms: list, num_clipped: int):
  """One update from the gradients of a loss's parts.

  Args:
    parts: gradient lists over the same variables, one per part of the
      loss (this replica's gradient of its share, loss / R).
    clip_norms: per part, the clip of its global norm (None: none).
    num_clipped: the first `num_clipped` variables (the main optimizer's) are
      clipped and measured; the others (the critics' own) are not.

  Returns:
    (the summed gradients, [norm of each part before clipping] float32
    scalars). Under a strategy each part is first summed over the replicas
    (the single-device gradient; each replica then holds the same values),
    and the result is divided by R: the optimizer's own sum over replicas
    restores it. Keras optimizers would clip each replica's share before
    that sum, so the optimizers here must not clip (no global_clipnorm).
  """
  combined, norms = [None] * len(parts[0]), []
  for gradients, clip_norm in zip(parts, clip_norms):
    gradients = replicas.sum_over_replicas(gradients)
    clipped, norm = clip(gradients[:num_clipped], clip_norm)
    norms.append(norm)
    combined = [add(c, g) for c, g in zip(
        combined, clipped + list(gradients[num_clipped:]))]
  scale = 1.0 / replicas.num_replicas()
  if scale != 1.0:
    combined = [scaled(g, scale) for g in combined]
  return combined, norms


# Bit i of a step's "nonfinite" output: NONFINITE_TERMS[i] was NaN or inf.
NONFINITE_TERMS = ("reconstruction", "kl", "critic", "model_critic",
                   "gradients")


def _nonfinite_mask(terms: objective_lib.Terms, gradients: list) -> tf.Tensor:
  """An int32 bitmask of the step's non-finite parts (0: all finite), the
  same on every replica (each replica's verdicts are combined)."""
  def bad(value):
    return tf.logical_not(tf.reduce_all(tf.math.is_finite(value)))
  parts = [bad(terms.log_likelihood), bad(terms.kl),
           *(bad(contrast.log_softmax_positive if contrast else 0.0)
             for contrast in (terms.critic, terms.model_critic)),
           bad(tf.linalg.global_norm([g for g in gradients if g is not None]))]
  mask = tf.add_n([tf.cast(part, tf.int32) * (1 << i)
                   for i, part in enumerate(parts)])
  return replicas.bitwise_or(mask)


def nonfinite_names(mask: int) -> list[str]:
  """The NONFINITE_TERMS a step's "nonfinite" bitmask names."""
  return [name for i, name in enumerate(NONFINITE_TERMS) if mask & (1 << i)]
