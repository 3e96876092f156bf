"""Builds the tiny Hugging Face T5 1.1 fixture in tests/testdata/hf_tiny_t5/ (and checks exports).

Needs torch and transformers 5.x, which the project does not depend on; run it from a separate
environment:

    python3 -m venv /tmp/hfvenv
    /tmp/hfvenv/bin/pip install torch==2.13.0 'transformers>=5,<6' safetensors numpy
    /tmp/hfvenv/bin/python scripts/make_hf_fixture.py
    # Load a directory written by `python -m flan.convert flan_to_hf` into transformers and
    # compare its logits on the fixture inputs with the fixture's:
    /tmp/hfvenv/bin/python scripts/make_hf_fixture.py --check_export /tmp/exported

The model is a random gated-GELU T5 with its own lm_head (T5 1.1 / FLAN-T5 do not tie it).
transformers 5 builds every T5 tied, so the script replaces lm_head with fresh values, saves,
reloads with `from_pretrained`, and takes the reference logits from the reloaded model.
Layer-norm scales are randomised too, so a mis-mapped norm cannot hide behind ones.
"""

import argparse
import json
import pathlib

import numpy as np
import torch
import transformers

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "testdata" / "hf_tiny_t5"
CONFIG = dict(
  vocab_size=96,
  d_model=32,
  d_kv=6,
  d_ff=40,
  num_layers=2,
  num_decoder_layers=3,
  num_heads=4,
  relative_attention_num_buckets=32,
  relative_attention_max_distance=128,
  dropout_rate=0.0,
  layer_norm_epsilon=1e-6,
  feed_forward_proj="gated-gelu",
  tie_word_embeddings=False,
  pad_token_id=0,
  eos_token_id=1,
  decoder_start_token_id=0,
)


def fixture_inputs() -> dict[str, np.ndarray]:
  """Three rows: full length, padded, and short (encoder length 40 reaches the log buckets)."""
  rng = np.random.default_rng(0)
  enc = rng.integers(2, CONFIG["vocab_size"], size=(3, 40)).astype(np.int32)
  enc[:, -1] = 1
  enc[1, 27:] = 0
  enc[1, 26] = 1
  enc[2, 9:] = 0
  enc[2, 8] = 1
  targets = rng.integers(2, CONFIG["vocab_size"], size=(3, 12)).astype(np.int32)
  targets[:, -1] = 1
  targets[1, 7:] = 0
  targets[1, 6] = 1
  dec_in = np.concatenate([np.zeros((3, 1), np.int32), targets[:, :-1]], axis=1)
  dec_in[targets == 0] = 0
  return {
    "encoder_input_tokens": enc,
    "decoder_input_tokens": dec_in,
    "decoder_target_tokens": targets,
  }


def logits_of(model, inputs: dict[str, np.ndarray]) -> np.ndarray:
  enc = torch.tensor(inputs["encoder_input_tokens"], dtype=torch.long)
  dec = torch.tensor(inputs["decoder_input_tokens"], dtype=torch.long)
  with torch.no_grad():
    out = model(input_ids=enc, attention_mask=(enc > 0).long(), decoder_input_ids=dec)
  return out.logits.float().numpy()


def build() -> None:
  torch.manual_seed(0)
  model = transformers.T5ForConditionalGeneration(transformers.T5Config(**CONFIG)).eval()
  with torch.no_grad():
    for name, param in model.named_parameters():
      if name.endswith("layer_norm.weight"):
        param.copy_(1.0 + 0.2 * torch.randn_like(param))
    model.lm_head.weight = torch.nn.Parameter(0.2 * torch.randn_like(model.shared.weight))
  OUT.mkdir(parents=True, exist_ok=True)
  model.save_pretrained(OUT)
  for extra in OUT.iterdir():
    if extra.name not in ("config.json", "model.safetensors"):
      extra.unlink()
  config = json.loads((OUT / "config.json").read_text())
  config["tie_word_embeddings"] = False
  (OUT / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")

  reloaded = transformers.T5ForConditionalGeneration.from_pretrained(OUT).eval()
  assert not torch.equal(reloaded.lm_head.weight, reloaded.shared.weight), "lm_head got tied"
  inputs = fixture_inputs()
  logits = logits_of(reloaded, inputs)
  np.testing.assert_allclose(logits, logits_of(model, inputs), atol=1e-6)
  np.savez(OUT / "expected_logits.npz", logits=logits, **inputs)
  sizes = {p.name: p.stat().st_size for p in OUT.iterdir()}
  print(f"wrote {OUT}: {sizes}")


def check_export(directory: str) -> None:
  model = transformers.T5ForConditionalGeneration.from_pretrained(directory).eval()
  expected = np.load(OUT / "expected_logits.npz")
  inputs = {
    k: expected[k]
    for k in ("encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens")
  }
  logits = logits_of(model, inputs)
  real = inputs["decoder_target_tokens"] > 0
  diff = np.abs(logits - expected["logits"])[real].max()
  print(f"max |logit difference| on real target tokens: {diff:.3g}")
  if diff > 1e-4:
    raise SystemExit("the exported checkpoint does not reproduce the fixture's logits")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--check_export", help="an exported HF directory to load and compare")
  args = parser.parse_args()
  if args.check_export:
    check_export(args.check_export)
  else:
    build()


if __name__ == "__main__":
  main()
