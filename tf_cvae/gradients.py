"""Gradient lists: their global norm, clipping, sums, and the combination of
a loss's separately clipped parts into one update (also across replicas).

A gradient list holds one entry per variable: a dense tensor, a
tf.IndexedSlices (embeddings; an index may repeat) or None (no path).
"""

import tensorflow as tf

from tf_cvae import replicas


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


def clip(gradients: list, clip_norm: float | None):
  """(gradients scaled to global norm <= clip_norm, their norm before).

  No clip_norm (None or 0): unchanged. A non-finite norm makes every
  gradient NaN (the step's non-finite mask then skips it).
  """
  norm = global_norm(gradients)
  if not clip_norm:
    return list(gradients), norm
  scale = clip_norm / tf.maximum(norm, clip_norm)
  scale += norm - norm               # NaN when the norm is inf or NaN
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


def combine_parts(parts: list, clip_norms: list, num_clipped: int,
                  scales: list | None = None):
  """One update from the gradients of a loss's parts.

  Args:
    parts: gradient lists over the same variables, one per part of the
      loss (this replica's gradient of its share, loss / R).
    clip_norms: per part, the clip of its global norm (None: none).
    num_clipped: the first `num_clipped` variables (the main optimizer's) are
      clipped and measured; the others (the critics' own) are not.
    scales: per part, a factor applied after the clip (e.g. lambda); None:
      1 for every part.

  Returns:
    (the summed gradients, [norm of each part before clipping] float32
    scalars). Under a strategy each part is first summed over the replicas
    (the single-device gradient; each replica then holds the same values),
    and the result is divided by R: the optimizer's own sum over replicas
    restores it. Keras optimizers would clip each replica's share before
    that sum, so the optimizers here must not clip (no global_clipnorm).
  """
  combined, norms = [None] * len(parts[0]), []
  for gradients, clip_norm, scale in zip(parts, clip_norms,
                                         scales or [1.0] * len(parts)):
    gradients = replicas.sum_over_replicas(gradients)
    clipped, norm = clip(gradients[:num_clipped], clip_norm)
    norms.append(norm)
    part = clipped + list(gradients[num_clipped:])
    if not (isinstance(scale, float) and scale == 1.0):
      part = [scaled(g, scale) for g in part]
    combined = [add(c, g) for c, g in zip(combined, part)]
  scale = 1.0 / replicas.num_replicas()
  if scale != 1.0:
    combined = [scaled(g, scale) for g in combined]
  return combined, norms
