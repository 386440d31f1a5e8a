"""Decoding from trained runs (tf_cvae.trained.sampling) and runners/sample.py."""

import json
import pathlib

import numpy as np
import pytest
import tensorflow as tf

from tf_cvae import data as data_lib
from tf_cvae import errors
from tf_cvae.models import pixelcnn
from tf_cvae.models import resnet
from tf_cvae.models import vae as vae_lib
from tf_cvae.trained import inputs
from tf_cvae.trained import restore
from tf_cvae.trained import sampling


def _trained(run_dir):
  """The 5-step run in run_dir, restored: (vae, vocab)."""
  run = restore.restore_run(str(run_dir), "auto", with_data=False)
  return run.vae, run.vocab


@pytest.fixture(scope="module")
def text_run(tiny_runs):
  run_dir = pathlib.Path(tiny_runs["text"][0].out_dir)
  vae, vocab = _trained(run_dir)
  sentences = [" ".join(vocab.decode(s)) for s in
               data_lib.load(data_lib.DataConfig()).splits["test"][:4]]
  return dict(run_dir=run_dir, vae=vae, vocab=vocab, sentences=sentences)


@pytest.fixture(scope="module")
def image_run(tiny_runs):
  run_dir = pathlib.Path(tiny_runs["image"][0].out_dir)
  vae, vocab = _trained(run_dir)
  assert vocab is None
  images = (np.random.default_rng(0).random((4, 28, 28, 1)) < 0.3).astype(
      np.float32)
  return dict(run_dir=run_dir, vae=vae, images=images)


def test_prior_latents_are_seeded_normals():
  z = sampling.prior_latents(3, 5, seed=7)
  assert z.shape == (5, 3) and z.dtype == tf.float32
  np.testing.assert_array_equal(z, sampling.prior_latents(3, 5, seed=7))
  assert not np.allclose(z, sampling.prior_latents(3, 5, seed=8))
  with pytest.raises(errors.InputError, match="at least 1"):
    sampling.prior_latents(3, 0, seed=0)


def test_text_greedy_is_deterministic_and_sampling_follows_the_seed(text_run):
  vae, vocab = text_run["vae"], text_run["vocab"]
  z = sampling.prior_latents(vae.latent_dim, 6, seed=1)
  greedy = sampling.decode(vae, z, "greedy", vocab=vocab, max_words=7)
  assert len(greedy) == 6 and all(isinstance(s, str) for s in greedy)
  assert all(len(s.split()) <= 7 for s in greedy)
  assert greedy == sampling.decode(vae, z, "greedy", seed=5, vocab=vocab,
                                   max_words=7)
  sampled = sampling.decode(vae, z, "sample", seed=3, vocab=vocab)
  assert sampled == sampling.decode(vae, z, "sample", seed=3, vocab=vocab)
  assert sampled != sampling.decode(vae, z, "sample", seed=4, vocab=vocab)
  with pytest.raises(errors.InputError, match="greedy, sample, beam"):
    sampling.decode(vae, z, "top_k", vocab=vocab)
  with pytest.raises(errors.InputError, match="vocabulary"):
    sampling.decode(vae, z)


def test_text_reconstruction_and_interpolation_endpoints(text_run):
  vae, vocab, sentences = (text_run[k] for k in ("vae", "vocab", "sentences"))
  batch = sampling.to_batch(vae, sentences, vocab)
  means, decoded = sampling.reconstruct(vae, batch, vocab=vocab)
  np.testing.assert_allclose(means, vae.encode(batch)[0], atol=1e-6)
  assert decoded == sampling.decode(vae, means, vocab=vocab)
  z, paths = sampling.interpolate(vae, batch, num_steps=5, vocab=vocab)
  assert z.shape == (2, 5, vae.latent_dim)
  np.testing.assert_allclose(z[:, 0], means[0::2], atol=1e-6)
  np.testing.assert_allclose(z[:, -1], means[1::2], atol=1e-6)
  np.testing.assert_allclose(z[:, 2], (means[0::2] + means[1::2]) / 2,
                             atol=1e-6)
  assert [len(p) for p in paths] == [5, 5]
  for pair, path in enumerate(paths):
    assert path[0] == decoded[2 * pair] and path[-1] == decoded[2 * pair + 1]
  with pytest.raises(errors.InputError, match="pairs"):
    sampling.interpolate(vae, sampling.to_batch(vae, sentences[:3], vocab),
                         vocab=vocab)


def test_to_batch_frames_pads_and_refuses_empty_input(text_run):
  vae, vocab = text_run["vae"], text_run["vocab"]
  batch = sampling.to_batch(vae, ["w1 w2", "  neverseen "], vocab)
  tokens = batch["tokens"].numpy()
  np.testing.assert_array_equal(tokens[0], vocab.encode(["w1", "w2"]))
  np.testing.assert_array_equal(tokens[1], [1, 3, 2, 0])  # <s> unk </s> pad
  with pytest.raises(errors.InputError, match="no sentences"):
    sampling.to_batch(vae, [], vocab)
  with pytest.raises(errors.InputError, match="sentence 2 is empty"):
    sampling.to_batch(vae, ["w1", "  "], vocab)


def test_image_decoding_shapes_determinism_and_endpoints(image_run):
  vae, images = image_run["vae"], image_run["images"]
  z = sampling.prior_latents(vae.latent_dim, 5, seed=0)
  greedy = sampling.decode(vae, z, "greedy")
  assert greedy.shape == (5, 28, 28, 1) and greedy.dtype == np.float32
  assert set(np.unique(greedy)) <= {0.0, 1.0}
  np.testing.assert_array_equal(greedy, sampling.decode(vae, z, "greedy",
                                                        seed=9))
  sampled = sampling.decode(vae, z, "sample", seed=2)
  np.testing.assert_array_equal(sampled, sampling.decode(vae, z, "sample",
                                                         seed=2))
  assert (sampled != sampling.decode(vae, z, "sample", seed=3)).any()
  batch = sampling.to_batch(vae, images[..., 0])           # [N, 28, 28] too
  np.testing.assert_array_equal(batch["image"], images)
  means, decoded = sampling.reconstruct(vae, batch)
  assert means.shape == (4, 3) and decoded.shape == (4, 28, 28, 1)
  z, paths = sampling.interpolate(vae, batch, num_steps=3)
  assert z.shape == (2, 3, 3) and paths.shape == (2, 3, 28, 28, 1)
  np.testing.assert_array_equal(paths[:, 0], decoded[0::2])
  np.testing.assert_array_equal(paths[:, -1], decoded[1::2])


@pytest.mark.parametrize("images, message", [
    (np.zeros((2, 14, 14)), r"\[N, 28, 28\].*\[2, 14, 14\]"),
    (np.zeros((2, 28, 28, 3)), r"\[2, 28, 28, 3\]"),
    (np.zeros((0, 28, 28)), "no images"),
    (np.full((1, 28, 28), 2.0), r"\[0, 1\]"),
    (np.full((1, 28, 28), np.nan), r"\[0, 1\]")])
def test_check_images_refuses_bad_images(images, message):
  with pytest.raises(errors.InputError, match=message):
    inputs.check_images(images)


def test_pixelcnn_greedy_is_deterministic_and_sampling_seeded():
  vae = vae_lib.VAE(resnet.ResNetEncoder(2, 4),
                    pixelcnn.GatedPixelCNNDecoder(2, 4), latent_dim=2)
  z = sampling.prior_latents(2, 3, seed=0)
  vae.decoder.likelihood({"image": tf.zeros([3, 28, 28, 1])}, z)  # builds it
  greedy = sampling.decode(vae, z, "greedy")
  assert greedy.shape == (3, 28, 28, 1)
  np.testing.assert_array_equal(greedy, sampling.decode(vae, z, "greedy"))
  sampled = sampling.decode(vae, z, "sample", seed=1)
  assert set(np.unique(sampled)) <= {0.0, 1.0}
  np.testing.assert_array_equal(sampled, sampling.decode(vae, z, "sample",
                                                         seed=1))


def test_png_grid_decodes_back_to_the_tiles(tmp_path):
  images = np.random.default_rng(1).integers(0, 2, (7, 28, 28, 1))
  path = sampling.write_png(str(tmp_path / "sub" / "grid.png"), images, 3)
  grid = tf.io.decode_png(tf.io.read_file(path)).numpy()
  assert grid.shape == (3 * 28 + 4 * 2, 3 * 28 + 4 * 2, 1)   # 3 rows, pad 2
  np.testing.assert_array_equal(grid[2:30, 2:30], images[0] * 255)
  np.testing.assert_array_equal(grid[32:60, 62:90], images[5] * 255)
  assert (grid[62:90, 32:60] == 128).all()            # no 8th image: padding
  ordered = sampling.paired_rows(images[:3], 1 - images[:3], columns=2)
  assert ordered.shape == (8, 28, 28, 1)
  np.testing.assert_array_equal(ordered[2:4], 1 - images[:2])
  assert not ordered[7].any()                          # blank tile


def test_read_inputs_from_files_and_splits(tmp_path, text_run, image_run):
  vae, vocab = text_run["vae"], text_run["vocab"]
  run_dir = str(text_run["run_dir"])
  batch, sentences = sampling.read_inputs(vae, "test:0,2", run_dir, vocab)
  assert sentences == [text_run["sentences"][0], text_run["sentences"][2]]
  np.testing.assert_array_equal(
      batch["tokens"], sampling.to_batch(vae, sentences, vocab)["tokens"])
  lines = tmp_path / "lines.txt"
  lines.write_bytes(b"\xef\xbb\xbfw1 w2\nw3\n")           # a BOM is dropped
  batch, sentences = sampling.read_inputs(vae, str(lines), run_dir, vocab)
  assert sentences == ["w1 w2", "w3"]
  np.testing.assert_array_equal(batch["tokens"][1],
                                vocab.encode(["w3"]).tolist() + [0])
  npy = tmp_path / "images.npy"
  np.save(npy, image_run["images"])
  batch, given = sampling.read_inputs(image_run["vae"], str(npy),
                                      str(image_run["run_dir"]))
  np.testing.assert_array_equal(batch["image"], image_run["images"])
  np.testing.assert_array_equal(given, image_run["images"])
  for source, message in [(str(tmp_path / "absent.txt"), "no such file"),
                          (str(npy), "give a text file of sentences"),
                          ("test:99999", "no index 99999")]:
    with pytest.raises(errors.InputError, match=message):
      sampling.read_inputs(vae, source, run_dir, vocab)


@pytest.mark.parametrize("content, message", [
    (b"w1 w2\n\nw3\n", "lines.txt, line 2: empty"),   # no skipping: row i
    (b"w1\n \t \n", "lines.txt, line 2: empty"),      # is line i
    (b"\n", "lines.txt, line 1: empty"),
    (b"", "lines.txt: holds no sentences"),
    (b"w1\nw\xff2\n", "lines.txt, line 2: not valid UTF-8"),
    (b"w1\0", "lines.txt: NUL byte at byte 2")])
def test_the_one_reader_refuses_blank_lines_naming_file_and_line(
    content, message, tmp_path, text_run):
  lines = tmp_path / "lines.txt"
  lines.write_bytes(content)
  with pytest.raises(errors.InputError, match=message):
    inputs.read_file(str(lines), "sentences")
  with pytest.raises(errors.InputError, match=message):   # sampling's too
    sampling.read_inputs(text_run["vae"], str(lines),
                         str(text_run["run_dir"]), text_run["vocab"])


def test_sample_runner_text_end_to_end(tmp_path, text_run, run_runner):
  run_dir = text_run["run_dir"]
  result = run_runner("sample.py", f"--run_dir={run_dir}", "--num_samples=3",
                      "--decoding=sample", "--seed=2", "--max_words=6")
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stdout.strip("\n").split("\n")
  assert len(lines) == 3 and all(len(l.split()) <= 6 for l in lines)
  assert (run_dir / "samples" / "prior.txt").read_text().splitlines() == lines
  used = json.loads((run_dir / "samples" / "prior.json").read_text())
  assert used["checkpoint"] == "last" and used["run_dir"] == str(run_dir)
  assert used["checkpoint_path"] == tf.train.latest_checkpoint(
      str(run_dir / "checkpoints"))
  inputs = tmp_path / "in.txt"
  inputs.write_text("\n".join(text_run["sentences"][:2]) + "\n")
  result = run_runner("sample.py", f"--run_dir={run_dir}",
                      "--mode=interpolate", f"--input={inputs}",
                      "--num_steps=4", f"--output_dir={tmp_path / 'out'}")
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stdout.strip("\n").split("\n")
  assert [l.split()[0] for l in lines] == ["0.00", "0.33", "0.67", "1.00"]
  assert (tmp_path / "out" / "interpolate.txt").exists()
  result = run_runner("sample.py", f"--run_dir={run_dir}", "--mode=reconstruct",
                      f"--input={inputs}", "--decoding=beam", "--beam_size=3",
                      f"--output_dir={tmp_path / 'out'}")
  assert result.returncode == 0, result.stderr[-3000:]
  vae, vocab = text_run["vae"], text_run["vocab"]
  _, beams = sampling.reconstruct(vae, sampling.to_batch(
      vae, text_run["sentences"][:2], vocab), "beam", vocab=vocab, beam_size=3)
  assert result.stdout.strip("\n").split("\n")[1::2] == [
      f"> {sentence}" for sentence in beams]


def test_sample_runner_writes_image_grids(tmp_path, image_run, run_runner):
  npy = tmp_path / "images.npy"
  np.save(npy, image_run["images"])
  for mode, shape in [("interpolate", (2 * 30 + 2, 7 * 30 + 2, 1)),
                      ("reconstruct", (2 * 30 + 2, 4 * 30 + 2, 1))]:
    result = run_runner("sample.py", f"--run_dir={image_run['run_dir']}",
                        f"--mode={mode}", f"--input={npy}", "--num_steps=5",
                        f"--output_dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    path = result.stdout.strip().splitlines()[-1]
    assert path == str(tmp_path / f"{mode}.png")
    grid = tf.io.decode_png(tf.io.read_file(path)).numpy()
    assert grid.shape == shape, mode


@pytest.mark.parametrize("case", ["missing_run_dir", "image_shape",
                                  "empty_input", "beam_size_alone",
                                  "beam_on_images"])
def test_sample_runner_errors_are_one_line(case, tmp_path, text_run,
                                           image_run, run_runner):
  run_dir, args = image_run["run_dir"], ["--mode=reconstruct"]
  if case == "missing_run_dir":
    run_dir = tmp_path / "absent"
    needles = [f"--run_dir={run_dir}", "config.json"]
  elif case == "image_shape":
    np.save(tmp_path / "in.npy", np.zeros((2, 14, 14), np.float32))
    args.append(f"--input={tmp_path / 'in.npy'}")
    needles = ["[N, 28, 28]", "[2, 14, 14]"]
  elif case == "empty_input":
    run_dir = text_run["run_dir"]
    (tmp_path / "in.txt").write_text("w1\n\n")
    args.append(f"--input={tmp_path / 'in.txt'}")
    needles = ["in.txt, line 2: empty"]
  elif case == "beam_size_alone":
    args.append("--beam_size=3")
    needles = ["--decoding=greedy: --beam_size is for --decoding=beam only"]
  else:
    args.append("--decoding=beam")
    needles = [f"--run_dir={run_dir}: --decoding=beam decodes text",
               "decodes images"]
  result = run_runner("sample.py", f"--run_dir={run_dir}", *args)
  assert result.returncode == 2, result.stderr[-3000:]
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("error: "), last
  for needle in needles:
    assert needle in last, last
