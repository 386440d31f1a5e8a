"""Training on several devices: the strategy, the input pipeline that gives
each replica its slice of the global batch, which worker writes the run's
files, and the replica-side helpers that make a K-way contrast span the
global batch.

Under a tf.distribute strategy with R replicas each replica holds K/R
examples. The critic must still tell each z from all K examples (K is the
global batch, the InfoNCE bound uses log K), so the replicas gather each
other's x-side rows (`gather`, whose gradient sums the replicas' upstream
gradients: the step's gradient is that of the single-device loss) and label
their own z's positive by its global row (`position`). With one device (no
strategy, or a cross-replica context) every helper is the identity.
"""

import atexit
import os
import shutil
import tempfile

import tensorflow as tf

from tf_cvae import errors

STRATEGIES = ("default", "mirrored", "multi_worker")

# Strategies earlier versions offered (a saved config may name one): why not.
REMOVED_STRATEGIES = {
    "tpu": "TPUStrategy was offered but never run: no TPU was at hand and "
           "TensorFlow cannot simulate one on a CPU"}


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
  logical devices. "multi_worker": MultiWorkerMirroredStrategy over the
  workers TF_CONFIG names (every worker runs the same program; without
  TF_CONFIG, this process alone).
  """
  if name in REMOVED_STRATEGIES:
    raise errors.InputError(
        f"strategy {name!r} is no longer offered ({REMOVED_STRATEGIES[name]}); "
        f"use one of {', '.join(STRATEGIES)}")
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
  return tf.distribute.MultiWorkerMirroredStrategy(
      cluster_resolver=_tf_config())


def _tf_config() -> tf.distribute.cluster_resolver.TFConfigClusterResolver:
  """The cluster and this task as the TF_CONFIG variable names them."""
  try:
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    resolver.cluster_spec()
    return resolver
  except (ValueError, KeyError, TypeError) as error:
    raise errors.InputError(
        f"strategy=multi_worker: TF_CONFIG={os.environ.get('TF_CONFIG')!r} "
        f"is not a cluster with this task: {error}") from None


def is_chief(strategy: tf.distribute.Strategy | str) -> bool:
  """Whether this process writes the run's files: always on one worker;
  under multi_worker only the chief (TF_CONFIG's "chief" task, else worker
  0). `strategy`: a tf.distribute.Strategy, or a STRATEGIES name (then read
  from TF_CONFIG, before the strategy is made)."""
  if not isinstance(strategy, str):
    return strategy.extended.should_checkpoint
  if strategy != "multi_worker":
    return True
  resolver = _tf_config()
  if not resolver.task_type:                 # no TF_CONFIG: one worker
    return True
  if "chief" in resolver.cluster_spec().jobs:
    return resolver.task_type == "chief"
  return resolver.task_type == "worker" and resolver.task_id == 0


def worker_dir(strategy: tf.distribute.Strategy, out_dir: str,
               reads: tuple[str, ...] = ()) -> str:
  """Where this process writes its run files: `out_dir` on the chief; on any
  other worker a new temporary directory, deleted when the process exits,
  holding copies of out_dir's `reads` (files or folders, those that exist).

  Every worker must call it: it returns once all have made their copies,
  so the chief writes nothing into out_dir while another worker reads it.
  """
  if is_chief(strategy):
    barrier(strategy)
    return out_dir
  task = strategy.cluster_resolver.task_id
  path = tempfile.mkdtemp(prefix=f"tf_cvae_worker{task}_")
  atexit.register(shutil.rmtree, path, ignore_errors=True)
  for name in reads:
    source, copy = os.path.join(out_dir, name), os.path.join(path, name)
    if os.path.isdir(source):
      shutil.copytree(source, copy)
    elif os.path.exists(source):
      shutil.copy2(source, copy)
  barrier(strategy)
  return path


def barrier(strategy: tf.distribute.Strategy) -> None:
  """Returns once every worker has called it (a cross-worker sum of ones);
  at once with one worker."""
  if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return
  tf.function(lambda: strategy.reduce(tf.distribute.ReduceOp.SUM,
                                      strategy.run(lambda: tf.ones([])),
                                      axis=None))().numpy()


def distribute_batches(strategy: tf.distribute.Strategy, make_batches,
                       global_batch_size: int):
  """The batches of `make_batches()` (a tf.data.Dataset of global batches,
  dicts of [K, ...] tensors, K = global_batch_size or, for exact-length
  text, a smaller multiple of the replicas) as `strategy`'s replicas take
  them: the dataset itself with one replica, else a distributed dataset
  whose elements give replica r rows [r K/R, (r+1) K/R) of each batch.

  Each worker's input pipeline (strategy.distribute_datasets_from_function)
  builds the same global batches and keeps its replicas' slices, one after
  the other (its devices take consecutive elements), so R replicas see what
  one device would.
  """
  num_replicas = strategy.num_replicas_in_sync
  if num_replicas == 1:
    return make_batches()

  def input_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
    context.get_per_replica_batch_size(global_batch_size)  # raises if uneven
    local = num_replicas // context.num_input_pipelines
    first = context.input_pipeline_id * local

    def slices(batch):
      size = tf.shape(next(iter(batch.values())))[0] // num_replicas
      return tf.data.Dataset.range(first, first + local).map(
          lambda index: {k: rows_of(v, tf.cast(index, tf.int32), size)
                         for k, v in batch.items()})
    return make_batches().flat_map(slices)

  return strategy.distribute_datasets_from_function(input_fn)


def rows_of(global_rows: tf.Tensor, index, size) -> tf.Tensor:
  """Slice `index` of `size` rows of a global-batch tensor: [size, ...]."""
  start = index * size
  return global_rows[start:start + size]


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
  return rows_of(global_rows, replica_id(), tf.cast(local_size, tf.int32))


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
