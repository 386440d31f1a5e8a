"""Small building blocks shared by the models and critics."""

import keras


class Composite(keras.layers.Layer):
  """A layer made only of sublayers, which build on their first call.

  Keras 3 warns when a layer without `build` is built with unbuilt state;
  this no-op `build` says that the sublayers build themselves.
  """

  def build(self, input_shape):
    del input_shape
