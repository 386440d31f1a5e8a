"""The training protocol around the method: a run from config to metrics.

Read in this order: config (TrainConfig and its JSON round trip), train (the
loop and the epoch protocol), build (model, critic, optimizers and the
checkpoint of a run), schedule (the learning-rate halving rule), validation
(best and last checkpoints), evaluation (the test metrics), history
(history.jsonl), faults (signals and non-finite steps), determinism;
what a researcher watches: progress (the progress line and its ETA),
summaries (TensorBoard), lock (one process per run directory).
"""
