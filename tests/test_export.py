"""Restoring a run, exporting its encoder, loading it where only TF lives."""

import dataclasses
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from tf_cvae import data as data_lib
from tf_cvae import errors
from tf_cvae.data import vocabulary as vocab_lib
from tf_cvae.trained import export
from tf_cvae.trained import restore
from tf_cvae.training import evaluation


def _text_posterior(vae, vocab, sentences):
  """The live model's q(z|x) of whitespace-tokenized sentences: (means,
  log-variances), each numpy [N, latent]."""
  ids = [vocab.encode(s.split()) for s in sentences]
  tokens = np.zeros((len(ids), max(len(i) for i in ids)), np.int32)
  for row, sentence in enumerate(ids):
    tokens[row, :len(sentence)] = sentence
  return tuple(t.numpy() for t in vae.encode({"tokens": tf.constant(tokens)}))


@pytest.fixture(scope="module")
def text_run(tiny_runs):
  """A 5-step text run, restored and exported, with live means of sentences."""
  config, results = tiny_runs["text"]
  run_dir = pathlib.Path(config.out_dir)
  run = restore.restore_run(str(run_dir), "auto", with_data=False)
  vae, vocab, config_dict = run.vae, run.vocab, dataclasses.asdict(run.config)
  assert run.dataset is None and run.which == "best"
  dataset = data_lib.load(config.data)
  sentences = [" ".join(vocab.decode(s)) for s in dataset.splits["test"][:5]]
  sentences += ["  w1   unseenword <unk> _UNK w2 ", vocab.tokens[-1]]
  export_dir = export.export_encoder(vae, str(run_dir / "lib_export"), vocab)
  means, log_variances = _text_posterior(vae, vocab, sentences)
  return dict(run_dir=run_dir, config=config, results=results, vae=vae,
              vocab=vocab, config_dict=config_dict, dataset=dataset,
              sentences=sentences, export_dir=export_dir, means=means,
              log_variances=log_variances)


@pytest.fixture(scope="module")
def image_run(tiny_runs):
  """A 5-step MLP run on synthetic images, restored and exported."""
  run_dir = pathlib.Path(tiny_runs["image"][0].out_dir)
  run = restore.restore_run(str(run_dir), "auto", with_data=False)
  vae, vocab = run.vae, run.vocab
  assert vocab is None
  images = (np.random.default_rng(0).random((6, 28, 28, 1)) < 0.3).astype(
      np.float32)
  export_dir = export.export_encoder(vae, str(run_dir / "lib_export"))
  means, log_variances = (
      t.numpy() for t in vae.encode({"image": tf.constant(images)}))
  return dict(run_dir=run_dir, vae=vae, images=images, export_dir=export_dir,
              means=means, log_variances=log_variances)


def test_restored_vae_reproduces_the_runs_test_metrics(text_run):
  run = text_run
  assert json.loads(json.dumps(run["config_dict"])) == json.loads(
      (run["run_dir"] / "config.json").read_text())
  again = evaluation.evaluate(run["vae"], None, run["dataset"],
                              evaluation.EvalConfig(iw_samples=0,
                                                    max_examples=64))
  for key in ("kl", "rec"):
    assert again[key] == pytest.approx(run["results"][key], rel=1e-5)


def test_restore_names_the_missing_file(tmp_path, text_run):
  def fails_naming(text):
    with pytest.raises(errors.InputError, match=re.escape(text)):
      restore.restore_run(str(tmp_path), "auto", with_data=False)

  fails_naming(f"{tmp_path}/config.json")
  shutil.copy(text_run["run_dir"] / "config.json", tmp_path)
  fails_naming(f"{tmp_path}/vocab.txt")
  shutil.copy(text_run["run_dir"] / "vocab.txt", tmp_path)
  fails_naming(f"no checkpoint in {tmp_path}")


_FRESH_PROCESS = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    text_dir, image_dir, inputs, out = sys.argv[1:]
    given = np.load(inputs, allow_pickle=True)
    text = tf.saved_model.load(text_dir)
    images = tf.saved_model.load(image_dir)
    t = text.encode(tf.constant(list(given["sentences"])))
    served = text.signatures["serving_default"](
        sentences=tf.constant(list(given["sentences"])))
    i = images.encode(tf.constant(given["images"]))
    by_name = images.signatures["encode"](images=tf.constant(given["images"]))
    errors = {}
    for name, call in [
        ("empty", lambda: text.encode(tf.constant(["w1", "   "]))),
        ("range", lambda: images.encode(tf.constant(2 * given["images"]))),
        ("shape", lambda: images.encode(tf.zeros([2, 28, 28, 3])))]:
      try:
        call()
        errors[name] = None
      except (tf.errors.InvalidArgumentError, ValueError, TypeError) as e:
        errors[name] = str(e)
    np.savez(out, text_mean=t["mean"], text_logvar=t["log_variance"],
             text_sample=t["sample"], served_mean=served["mean"],
             image_mean=i["mean"], image_sample=i["sample"],
             encode_signature_mean=by_name["mean"])
    print(json.dumps(errors))
    """)


@pytest.mark.slow
def test_export_in_a_fresh_process_matches_the_live_model(
    tmp_path, text_run, image_run):
  inputs, out = tmp_path / "inputs.npz", tmp_path / "out.npz"
  np.savez(inputs, sentences=np.asarray(text_run["sentences"], dtype=object),
           images=image_run["images"])
  result = subprocess.run(
      [sys.executable, "-c", _FRESH_PROCESS, text_run["export_dir"],
       image_run["export_dir"], str(inputs), str(out)],
      capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  got = np.load(out)
  np.testing.assert_allclose(got["text_mean"], text_run["means"], atol=1e-5)
  np.testing.assert_allclose(got["served_mean"], text_run["means"], atol=1e-5)
  np.testing.assert_allclose(got["image_mean"], image_run["means"], atol=1e-5)
  np.testing.assert_allclose(got["encode_signature_mean"], image_run["means"],
                             atol=1e-5)
  np.testing.assert_allclose(got["text_logvar"], text_run["log_variances"],
                             atol=1e-5)
  for kind in ("text", "image"):
    assert got[f"{kind}_sample"].shape == got[f"{kind}_mean"].shape
    assert not np.allclose(got[f"{kind}_sample"], got[f"{kind}_mean"])
  errors = json.loads(result.stdout.strip().splitlines()[-1])
  assert "empty sentence" in errors["empty"]
  assert "[0, 1]" in errors["range"]
  assert errors["shape"] is not None


@pytest.mark.slow
def test_saved_model_cli_serves_both_signatures(tmp_path, text_run,
                                                image_run):
  """The TF1 loader behind saved_model_cli and TF Serving runs each of the
  export's signatures, finding every variable it reads; both give the live
  model's q(z|x)."""
  cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
  images = tmp_path / "images.npy"
  np.save(images, image_run["images"])
  sentences = json.dumps(text_run["sentences"])
  for kind, run, feed in [
      ("text", text_run, ["--input_exprs", f"sentences={sentences}"]),
      ("image", image_run, ["--inputs", f"images={images}"])]:
    assert sorted(tf.saved_model.load(run["export_dir"]).signatures) == sorted(
        export.SIGNATURES)
    for signature in export.SIGNATURES:
      out_dir = tmp_path / kind / signature
      result = subprocess.run(
          [cli, "run", "--dir", run["export_dir"], "--tag_set", "serve",
           "--signature_def", signature, *feed, "--outdir", str(out_dir)],
          capture_output=True, text=True, timeout=300)
      assert result.returncode == 0, result.stderr[-3000:]
      where = f"{kind} {signature}"
      mean = np.load(out_dir / "mean.npy")
      np.testing.assert_allclose(mean, run["means"], atol=1e-5, err_msg=where)
      np.testing.assert_allclose(np.load(out_dir / "log_variance.npy"),
                                 run["log_variances"], atol=1e-5,
                                 err_msg=where)
      sample = np.load(out_dir / "sample.npy")
      assert sample.shape == mean.shape and not np.allclose(sample, mean)


def test_unknown_words_and_markers_share_the_unknown_id(text_run):
  vae = text_run["vae"]
  loaded = tf.saved_model.load(text_run["export_dir"])
  words = ["<unk>", "_UNK", "UNK", "neverseen"]
  out = loaded.encode(tf.constant(words))
  means = out["mean"].numpy()
  # Words outside the vocabulary are counted; the unknown markers are not.
  np.testing.assert_array_equal(out["unknown_words"].numpy(), [0, 0, 0, 1])
  counted = loaded.encode(tf.constant(text_run["sentences"]))
  assert counted["unknown_words"].numpy().tolist() == [0] * 5 + [1, 0]
  unknown = vae.encode({"tokens": tf.constant(
      [[vocab_lib.BOS_ID, vocab_lib.UNK_ID, vocab_lib.EOS_ID]])})[0].numpy()
  np.testing.assert_allclose(means, np.repeat(unknown, 4, axis=0), atol=1e-5)


def test_export_and_encode_runners_end_to_end(tmp_path, text_run, image_run,
                                              run_runner):
  run_dir = text_run["run_dir"]
  result = run_runner("export.py", f"--run_dir={run_dir}")
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip().splitlines()[-1] == str(run_dir / "export")
  # By default the checkpoint metrics.json reports (the last), recorded.
  exported = json.loads((run_dir / "export" / export.METADATA).read_text())
  with open(run_dir / "metrics.json", encoding="utf-8") as f:
    metrics = json.load(f)
  assert exported["checkpoint"] == metrics["evaluated_checkpoint"] == "last"
  assert exported["checkpoint_path"] == str(
      run_dir / metrics["evaluated_checkpoint_path"])
  sentences = tmp_path / "sentences.txt"
  sentences.write_text("\n".join(text_run["sentences"]) + "\n")
  output = tmp_path / "text.npy"
  result = run_runner("encode.py", f"--export_dir={run_dir / 'export'}",
                      f"--input={sentences}", f"--output={output}",
                      "--batch_size=3")
  assert result.returncode == 0, result.stderr[-3000:]
  np.testing.assert_allclose(np.load(output), text_run["means"], atol=1e-5)
  # "unseenword" in the 6th sentence: one warning line, and the summary.
  warned = [l for l in result.stderr.splitlines() if "not in the vocab" in l]
  assert len(warned) == 1 and warned[0].endswith(
      f"{sentences}: 1 words in 1 of 7 sentences are not in the vocabulary "
      "and were read as unknown"), result.stderr[-3000:]
  assert result.stdout.strip() == (
      f"{output}: 7 x 4 posterior means; 1 words not in the vocabulary")

  images = tmp_path / "images.npy"
  np.save(images, image_run["images"][..., 0])        # [N, 28, 28] works too
  output = tmp_path / "images_out.npy"
  result = run_runner("encode.py", f"--export_dir={image_run['export_dir']}",
                      f"--input={images}", f"--output={output}")
  assert result.returncode == 0, result.stderr[-3000:]
  np.testing.assert_allclose(np.load(output), image_run["means"], atol=1e-5)


def _assert_one_clear_error(result, *needles):
  assert result.returncode == 2, result.stderr[-3000:]
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("error: "), result.stderr[-3000:]
  for needle in needles:
    assert needle in last, last


@pytest.mark.parametrize("case", ["empty_sentence", "image_shape",
                                  "missing_input"])
def test_encode_runner_errors_are_one_line(case, tmp_path, text_run,
                                           image_run, run_runner):
  export_dir = text_run["export_dir"]
  if case == "empty_sentence":
    path = tmp_path / "in.txt"
    path.write_text("w1 w2\n   \nw3\n")
    needles = ("line 2: empty", "every line must hold a sentence")
  elif case == "image_shape":
    export_dir = image_run["export_dir"]
    path = tmp_path / "in.npy"
    np.save(path, np.zeros((2, 14, 14), np.float32))
    needles = ("[N, 28, 28", "[2, 14, 14]")
  else:
    path = tmp_path / "absent.txt"
    needles = ("no such file", str(path))
  result = run_runner("encode.py", f"--export_dir={export_dir}",
                      f"--input={path}", f"--output={tmp_path / 'out.npy'}")
  _assert_one_clear_error(result, *needles)
  assert not (tmp_path / "out.npy").exists()


def test_failed_export_leaves_the_previous_one(tmp_path, monkeypatch,
                                               image_run):
  export_dir = str(tmp_path / "export")
  export.export_encoder(image_run["vae"], export_dir)
  real_save = tf.saved_model.save

  def save_then_die(obj, path, **kwargs):
    real_save(obj, path, **kwargs)
    assert os.path.isdir(path) and path != export_dir
    raise RuntimeError("killed while writing")

  monkeypatch.setattr(tf.saved_model, "save", save_then_die)
  with pytest.raises(RuntimeError, match="killed"):
    export.export_encoder(image_run["vae"], export_dir)
  monkeypatch.undo()
  assert sorted(os.listdir(tmp_path)) == ["export"]
  loaded = tf.saved_model.load(export_dir)
  means = loaded.encode(tf.constant(image_run["images"]))["mean"].numpy()
  np.testing.assert_allclose(means, image_run["means"], atol=1e-5)
  # A complete new export replaces the old one.
  export.export_encoder(image_run["vae"], export_dir)
  assert sorted(os.listdir(tmp_path)) == ["export"]


def test_text_export_needs_the_vocabulary(text_run, image_run, tmp_path):
  with pytest.raises(ValueError, match="vocabulary"):
    export.export_encoder(text_run["vae"], str(tmp_path / "t"))
  with pytest.raises(ValueError, match="no vocabulary"):
    export.export_encoder(image_run["vae"], str(tmp_path / "i"),
                          text_run["vocab"])
