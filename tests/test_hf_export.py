"""The HF export is a complete model: weights, configs, tokenizer, save_pretrained's file modes.

The round trip through transformers needs the `[bench]` extra (torch + transformers); it is
skipped, with the install command, where they are missing. The file checks run everywhere.
"""

import json
import os
import pathlib
import stat

import jax
import numpy as np
import pytest

from flan import convert
from flan.model import encoder_decoder, network

PROMPTS = [
  "Premise: A man is playing a guitar on stage. Hypothesis: A man performs music. Is the "
  "hypothesis entailed?",
  "Translate to German: The weather is nice today.",
  "What is the capital of France?",
  "Write a short summary: The city council approved the new budget on Tuesday after a long "
  "debate about school funding.",
  "Is this review positive or negative? The food was cold and the service slow.",
]
INPUT_LENGTH, DECODE_LENGTH = 48, 12
_BENCH = "needs the [bench] extra (torch, transformers): pip install -e '.[bench]'"


def _tiny_checkpoint(tmp_path: pathlib.Path) -> tuple[network.T5Config, dict, pathlib.Path]:
  """A random tiny T5 sized for the T5 vocabulary, saved as hf_to_flan saves one."""
  import dataclasses

  import orbax.checkpoint as ocp

  config = network.T5Config(
    vocab_size=32128,
    emb_dim=32,
    num_heads=4,
    head_dim=8,
    mlp_dim=64,
    num_encoder_layers=2,
    num_decoder_layers=2,
    mlp_activations=("gelu", "linear"),
    dtype="float32",
  )
  model = encoder_decoder.EncoderDecoderModel(config)
  shapes = {"encoder_input_tokens": (1, 8), "decoder_input_tokens": (1, 8)}
  params = jax.tree.map(np.asarray, model.init(jax.random.PRNGKey(3), shapes))
  path = tmp_path / "ckpt"
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(path, {"params": params})
  checkpointer.wait_until_finished()
  (path / convert.CONFIG_FILE).write_text(json.dumps(dataclasses.asdict(config)))
  return config, params, path


def _export(tmp_path, *vocabulary_flag) -> pathlib.Path:
  _, _, ckpt = _tiny_checkpoint(tmp_path)
  out = tmp_path / "hf"
  convert.main(["flan_to_hf", "--checkpoint", str(ckpt), "--out", str(out), *vocabulary_flag])
  return out


def test_export_holds_tokenizer_generation_config_and_plain_file_modes(tmp_path, vocab_path):
  out = _export(tmp_path, "--vocabulary", vocab_path)
  assert sorted(p.name for p in out.iterdir()) == [
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "special_tokens_map.json",
    "spiece.model",
    "tokenizer_config.json",
  ]
  assert (out / "spiece.model").read_bytes() == pathlib.Path(vocab_path).read_bytes()
  assert json.loads((out / "generation_config.json").read_text()) == {
    "decoder_start_token_id": 0,
    "eos_token_id": 1,
    "pad_token_id": 0,
  }
  tokenizer_config = json.loads((out / "tokenizer_config.json").read_text())
  assert tokenizer_config["tokenizer_class"] == "T5Tokenizer"
  assert tokenizer_config["extra_ids"] == 100
  assert tokenizer_config["additional_special_tokens"][99] == "<extra_id_99>"
  umask = os.umask(0)
  os.umask(umask)
  for path in out.iterdir():  # what save_pretrained's plain open() gives: 0644 under umask 022
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path.name


def test_byte_vocabulary_exports_the_byt5_tokenizer(tmp_path):
  out = _export(tmp_path, "--vocabulary", "byte")
  assert not (out / "spiece.model").exists()
  config = json.loads((out / "tokenizer_config.json").read_text())
  assert config["tokenizer_class"] == "ByT5Tokenizer" and config["extra_ids"] == 0
  transformers = pytest.importorskip("transformers", reason=_BENCH)
  import seqio

  tokenizer = transformers.AutoTokenizer.from_pretrained(out)
  vocabulary = seqio.ByteVocabulary()
  for prompt in PROMPTS + ["héllo wörld, 日本語"]:
    assert tokenizer(prompt).input_ids == list(vocabulary.encode(prompt)) + [1]


def test_unknown_vocabulary_exports_weights_and_warns(tmp_path, caplog):
  out = _export(tmp_path)  # a t5_config.json checkpoint records no vocabulary
  assert (out / "model.safetensors").is_file() and not (out / "tokenizer_config.json").exists()
  assert "No tokenizer written" in caplog.text and "--vocabulary" in caplog.text


@pytest.mark.slow  # ~45 s: compiles flan's decoder and runs transformers on CPU
def test_transformers_generates_the_tokens_flan_decodes(tmp_path, vocab_path):
  """AutoTokenizer + AutoModelForSeq2SeqLM on the export == flan's greedy decoding."""
  transformers = pytest.importorskip("transformers", reason=_BENCH)
  torch = pytest.importorskip("torch", reason=_BENCH)
  from flan.data import tasks, vocabularies
  from flan.evaluation import inference
  from flan.model import partitioning

  config, params, ckpt = _tiny_checkpoint(tmp_path)
  out = tmp_path / "hf"
  convert.main(
    ["flan_to_hf", "--checkpoint", str(ckpt), "--out", str(out), "--vocabulary", vocab_path]
  )

  vocabulary = vocabularies.get_vocabulary(vocab_path)
  rows = tasks.tokenize({"inputs": PROMPTS}, vocabulary, {"inputs": INPUT_LENGTH})
  inputs = [r["inputs"].tolist() for r in rows]
  mesh = partitioning.make_mesh({"data": -1, "model": 1})
  runner = inference.ModelRunner(encoder_decoder.EncoderDecoderModel(config), mesh, batch_size=8)
  ours = runner.predict(runner.place(params), inputs, INPUT_LENGTH, DECODE_LENGTH)

  hf_tokenizer = transformers.AutoTokenizer.from_pretrained(out)
  hf_model = transformers.AutoModelForSeq2SeqLM.from_pretrained(out).eval()
  assert len(hf_tokenizer) == 32100
  batch = hf_tokenizer(PROMPTS, return_tensors="pt", padding=True)
  assert [row[row != 0].tolist() for row in batch.input_ids] == inputs  # same ids, same EOS
  with torch.no_grad():
    generated = hf_model.generate(
      **batch, max_new_tokens=DECODE_LENGTH, do_sample=False, num_beams=1
    )
  theirs = []
  for row in generated[:, 1:].tolist():  # drop decoder_start_token_id
    row = row[: row.index(1)] if 1 in row else row
    theirs.append([t for t in row if t != 0])
  assert any(ours), "the random model decodes nothing: the comparison would be empty"
  assert theirs == ours
  assert hf_tokenizer.batch_decode(generated, skip_special_tokens=True) == [
    vocabulary.decode(row) for row in ours
  ]
