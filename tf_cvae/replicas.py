"""Training on several devices: the strategy, and the replica-side helpers
that make a K-way contrast span the global batch.

Under a tf.distribute strategy with R replicas each replica holds K/R
examples. The critic must still tell each z from all K examples (K is the
global batch, the InfoNCE bound uses log K), so the replicas gather each
other's x-side rows (`gather`, whose gradient sums the replicas' upstream
gradients: the step's gradient is that of the single-device loss) and label
their own z's positive by its global row (`position`). With one device (no
strategy, or a cross-replica context) every helper is the identity.
"""

import tensorflow as tf

from tf_cvae import errors

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


def split_host_cpu(num_devices: int) -> None:
  """Splits the host CPU into `num_devices` logical devices (tests, demos).

  Must run before TensorFlow initializes its devices (the first op).
  """
  if num_devices <= 1:
    return
  cpu = tf.config.list_physical_devices("CPU")[0]
  current = tf.config.get_logical_device_configuration(cpu)
  if current is not None and len(current) == num_devices:
    return
  try:
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * num_devices)
  except RuntimeError as error:
    raise errors.InputError(
        f"cannot split the CPU into {num_devices} devices after TensorFlow "
        f"initialized them; set it first in the process: {error}") from None


def make_strategy(name: str = "default",
                  num_cpu_devices: int = 1) -> tf.distribute.Strategy:
  """The tf.distribute strategy called `name`.

  "default": one device (TensorFlow's default strategy). "mirrored": every
  local GPU, or, without GPUs, the host CPU split into `num_cpu_devices`
  logical devices. "multi_worker": MultiWorkerMirroredStrategy (TF_CONFIG
  names the workers). "tpu": a TPUStrategy on the TPU the environment names.
  """
  if name not in STRATEGIES:
    raise errors.InputError(f"strategy must be one of {', '.join(STRATEGIES)}, "
                            f"got {name!r}")
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    if tf.config.list_physical_devices("GPU"):
      return tf.distribute.MirroredStrategy()
    split_host_cpu(num_cpu_devices)
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices[:max(num_cpu_devices, 1)])
  if name == "multi_worker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  try:
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
  except (ValueError, tf.errors.NotFoundError) as error:
    raise errors.InputError(f"strategy=tpu but no TPU was found: {error}") from None
  return tf.distribute.TPUStrategy(resolver)


def _context():
  """The replica context when inside a multi-replica step, else None."""
  context = tf.distribute.get_replica_context()
  if context is None or context.num_replicas_in_sync == 1:
    return None
  return context


def num_replicas() -> int:
  """Replicas of the step being traced (1 outside a multi-replica step)."""
  context = _context()
  return 1 if context is None else context.num_replicas_in_sync


def replica_id() -> tf.Tensor:
  """This replica's index, an int32 scalar (0 with one device)."""
  context = _context()
  if context is None:
    return tf.constant(0, tf.int32)
  return tf.cast(context.replica_id_in_sync_group, tf.int32)


def position(local_size) -> tf.Tensor:
  """The global row of this replica's first example (equal shards), int32."""
  return replica_id() * tf.cast(local_size, tf.int32)


def gather(rows: tf.Tensor) -> tf.Tensor:
  """Every replica's rows, in replica order: [R * K_local, ...].

  Differentiable: the gradient reaching this replica's rows sums what every
  replica's loss sends them, as autodiff of the single-device loss would.
  """
  context = _context()
  if context is None:
    return rows
  gathered = context.all_gather(rows, axis=0)
  gathered.set_shape([None] + rows.shape[1:])   # all_gather drops them
  return gathered


def mean(value: tf.Tensor) -> tf.Tensor:
  """The mean of `value` over replicas (differentiable); identity alone."""
  context = _context()
  if context is None:
    return value
  return context.all_reduce(tf.distribute.ReduceOp.MEAN, value)


def local_rows(global_rows: tf.Tensor, local_size) -> tf.Tensor:
  """This replica's slice of a global-batch tensor: [K_local, ...]."""
  start = position(local_size)
  return global_rows[start:start + local_size]


def sum_over_replicas(gradients: list) -> list:
  """Every replica's gradients summed, on each replica (identity alone);
  None stays None. The replicas' partial gradients of the single-device
  loss add up to its gradient (gradients.combine_parts clips that sum)."""
  context = _context()
  if context is None:
    return list(gradients)
  present = [i for i, g in enumerate(gradients) if g is not None]
  if not present:
    return list(gradients)
  summed = context.all_reduce(tf.distribute.ReduceOp.SUM,
                              [gradients[i] for i in present])
  result = list(gradients)
  for i, g in zip(present, summed):
    result[i] = g
  return result


def bitwise_or(mask: tf.Tensor) -> tf.Tensor:
  """The OR of an int32 bitmask over replicas (identity alone)."""
  context = _context()
  if context is None:
    return mask
  bits = [tf.cast(tf.bitwise.bitwise_and(mask, 1 << i) > 0, tf.int32)
          for i in range(8)]
  present = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.stack(bits))
  return tf.reduce_sum(tf.cast(present > 0, tf.int32)
                       * tf.constant([1 << i for i in range(8)]))


def apply_if(condition: tf.Tensor, update_fn, *args) -> None:
  """update_fn(*args) (optimizer updates) only where `condition` holds.

  `condition` must be the same on every replica. Keras optimizers sum the
  replicas' gradients with merge_call, which may not run inside a cond in a
  replica context; so with several replicas the cond runs in the
  cross-replica context and calls each replica's update from there (the
  pattern of keras.optimizers.LossScaleOptimizer).
  """
  context = _context()
  if context is None:
    tf.cond(condition, lambda: _done(update_fn, args),
            lambda: tf.constant(False))
    return

  def cross_replica(strategy, condition, *args):
    first = strategy.experimental_local_results(condition)[0]
    def run():
      # args are per-replica values: each replica updates with its own.
      strategy.extended.call_for_each_replica(update_fn, args=args)
      return tf.constant(True)
    tf.cond(first, run, lambda: tf.constant(False))

  context.merge_call(cross_replica, args=(condition, *args))


def _done(update_fn, args) -> tf.Tensor:
  update_fn(*args)
  return tf.constant(True)
