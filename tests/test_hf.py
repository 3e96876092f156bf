"""Hugging Face interop: logits parity with transformers, lossless export, the convert CLI.

The fixture (tests/testdata/hf_tiny_t5, made by scripts/make_hf_fixture.py with transformers
5.x) is a random gated-GELU T5 with an untied lm_head and logits computed by transformers on
three rows, two of them padded.
"""

import json
import pathlib
import shutil

import gin
import jax
import numpy as np
import pytest
import safetensors.numpy

from flan import convert
from flan.errors import UserError
from flan.model import hf, network

FIXTURE = pathlib.Path(__file__).parent / "testdata" / "hf_tiny_t5"


def _expected():
  data = np.load(FIXTURE / "expected_logits.npz")
  return {k: data[k] for k in data.files}


def test_config_is_read_from_config_json():
  config, _ = hf.params_from_hf(FIXTURE, dtype="float32")
  assert config == network.T5Config(
    vocab_size=96,
    emb_dim=32,
    num_heads=4,
    num_encoder_layers=2,
    num_decoder_layers=3,
    head_dim=6,
    mlp_dim=40,
    mlp_activations=("gelu", "linear"),
    dtype="float32",
  )


@pytest.mark.parametrize("scan_layers", [False, True])
def test_forward_reproduces_transformers_logits(scan_layers):
  config, params = hf.params_from_hf(FIXTURE, dtype="float32", scan_layers=scan_layers)
  data = _expected()
  logits = jax.jit(
    lambda p: network.Transformer(config).apply(
      {"params": p},
      data["encoder_input_tokens"],
      data["decoder_input_tokens"],
      data["decoder_target_tokens"],
      enable_dropout=False,
    )
  )(params)
  real = data["decoder_target_tokens"] > 0  # HF does not mask padded query positions
  np.testing.assert_allclose(np.asarray(logits)[real], data["logits"][real], atol=1e-4)


@pytest.mark.parametrize("scan_layers", [False, True])
def test_export_writes_back_the_original_tensors(tmp_path, scan_layers):
  config, params = hf.params_from_hf(FIXTURE, dtype="float32", scan_layers=scan_layers)
  hf.params_to_hf(config, params, tmp_path)
  original = safetensors.numpy.load_file(FIXTURE / "model.safetensors")
  exported = safetensors.numpy.load_file(tmp_path / "model.safetensors")
  assert set(exported) == set(original) - {
    "encoder.embed_tokens.weight",
    "decoder.embed_tokens.weight",
  }
  for name, value in exported.items():
    np.testing.assert_array_equal(value, original[name], err_msg=name)
  written = json.loads((tmp_path / "config.json").read_text())
  assert written["tie_word_embeddings"] is False and written["scale_decoder_outputs"] is False
  assert written["feed_forward_proj"] == "gated-gelu"
  config_again, params_again = hf.params_from_hf(tmp_path, dtype="float32", scan_layers=scan_layers)
  assert config_again == config
  jax.tree.map(np.testing.assert_array_equal, params_again, params)


def test_tied_t5_1_0_checkpoint_gets_scaled_untied_logits(tmp_path):
  tensors = safetensors.numpy.load_file(FIXTURE / "model.safetensors")
  del tensors["lm_head.weight"]
  safetensors.numpy.save_file(tensors, tmp_path / "model.safetensors")
  config = json.loads((FIXTURE / "config.json").read_text())
  config.update(tie_word_embeddings=True, scale_decoder_outputs=True)
  (tmp_path / "config.json").write_text(json.dumps(config))
  _, params = hf.params_from_hf(tmp_path)
  np.testing.assert_allclose(
    params["decoder"]["logits_dense"]["kernel"], tensors["shared.weight"].T / np.sqrt(32), rtol=1e-6
  )


def test_unreadable_directories_say_what_is_missing(tmp_path):
  with pytest.raises(UserError, match="config.json"):
    hf.params_from_hf(tmp_path)
  shutil.copy(FIXTURE / "config.json", tmp_path / "config.json")
  with pytest.raises(UserError, match="safetensors"):
    hf.params_from_hf(tmp_path)
  config = json.loads((FIXTURE / "config.json").read_text())
  config["feed_forward_proj"] = "gated-silu"
  (tmp_path / "config.json").write_text(json.dumps(config))
  with pytest.raises(ValueError, match="gated-gelu"):
    hf.params_from_hf(tmp_path)


def test_convert_cli_round_trip(tmp_path, capsys):
  ours, back = tmp_path / "flan_ckpt", tmp_path / "hf_back"
  convert.main(["hf_to_flan", "--hf_dir", str(FIXTURE), "--out", str(ours)])
  assert (ours / convert.CONFIG_FILE).is_file()
  convert.main(["flan_to_hf", "--checkpoint", str(ours), "--out", str(back)])
  original = safetensors.numpy.load_file(FIXTURE / "model.safetensors")
  for name, value in safetensors.numpy.load_file(back / "model.safetensors").items():
    np.testing.assert_array_equal(value, original[name], err_msg=name)
  capsys.readouterr()
  with pytest.raises(SystemExit, match="does not exist") as e:
    convert.main(["flan_to_hf", "--checkpoint", str(tmp_path / "nope"), "--out", str(back)])
  errors = [l for l in capsys.readouterr().err.splitlines() if l.startswith("error: ")]
  assert e.value.code == 1 and len(errors) == 1 and "does not exist" in errors[0]
  (tmp_path / "empty").mkdir()
  with pytest.raises(SystemExit, match="holds no checkpoint"):
    convert.main(["flan_to_hf", "--checkpoint", str(tmp_path / "empty"), "--out", str(back)])


def test_flan_to_hf_reads_a_trainer_checkpoint_with_a_model_gin(tmp_path):
  checkpoints = pytest.importorskip("flan.training.checkpoints")
  if not hasattr(checkpoints, "Checkpoints"):
    pytest.skip("flan.training.checkpoints.Checkpoints (the trainer's saver) is not available")

  config, params = hf.params_from_hf(FIXTURE)
  state = {"step": np.int32(7), "params": params, "opt_state": jax.tree.map(np.zeros_like, params)}
  saver = checkpoints.Checkpoints(str(tmp_path / "model_dir"), async_save=False)
  saver.save(7, jax.tree.map(jax.numpy.asarray, state), {"position": 3})
  saver.wait()
  saver.close()
  gin_file = tmp_path / "model.gin"
  gin_file.write_text(
    "\n".join(
      ["from __gin__ import dynamic_registration", "from flan.model import network"]
      + [f"network.T5Config.{k} = {v!r}" for k, v in config.__dict__.items()]
    )
    + "\n"
  )
  out = tmp_path / "hf"
  try:
    convert.main(
      [
        "flan_to_hf",
        "--checkpoint",
        str(tmp_path / "model_dir"),
        "--out",
        str(out),
        "--gin_file",
        str(gin_file),
      ]
    )
  finally:
    gin.clear_config()  # convert parsed the gin file into the process-wide config
  _, again = hf.params_from_hf(out)
  jax.tree.map(np.testing.assert_array_equal, again, params)


def test_load_params_follows_the_model_layout_and_rejects_other_sizes():
  config, params = hf.params_from_hf(FIXTURE, dtype="float32")
  scanned = network.T5Config(**{**config.__dict__, "scan_layers": True})
  assert "layers" in hf.load_params(FIXTURE, scanned)["decoder"]
  jax.tree.map(np.testing.assert_array_equal, hf.load_params(FIXTURE, config), params)
  with pytest.raises(ValueError, match="emb_dim"):
    hf.load_params(FIXTURE, network.T5Config(**{**config.__dict__, "emb_dim": 64}))
