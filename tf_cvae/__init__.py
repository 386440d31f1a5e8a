"""tf_cvae: variational autoencoders that keep information in z, by a
contrastive critic whose InfoNCE cross-entropy joins the ELBO.

Reading order. The method, at the top of the package:
  critics      infonce(), the critics, their registry and default weights
  objective    the loss: negative ELBO + lambda * critic cross-entropy, and
               lambda (fixed, or a Lagrange multiplier holding the bound at
               a target)
  train_step   TrainStep, the one tf.function that trains both, with the
               clipping of their gradients
  metrics      KL, MI and its noise floor, active units, IW-NLL
  replicas     the contrast across tf.distribute replicas
  models/      latent, encoders, decoders, the model registry
  data/        data sets and their tf.data pipelines
  aggressive   He et al.'s aggressive training, a baseline
  methods      the compared methods as named changes to a TrainConfig
Then the training protocol, training/ (config, train, build, checkpointing,
timing, schedule, validation, evaluation, history, faults, determinism,
progress, summaries, lock); the uses of a trained run, trained/ (restore,
inputs, export, sampling); and benchmarking (the step's timing rows, with
torch_reference, a PyTorch model at the same shapes, for the bench extra).
The paper's reproduction and the matched-MI study import all of it from the
repository's experiments/ folder, outside the installed package.
"""
