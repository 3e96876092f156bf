"""t5x checkpoints in: the msgpack + TensorStore layout t5x's Checkpointer writes, read through
the one restore API (`checkpoints.locate` / `restore_params`), and `flan.convert t5x_to_*`.

The fixture is written here exactly as t5x's `checkpoints.Checkpointer.save` writes it: each
array a gzip zarr array (TensorStore) in `<step dir>/<dotted name>`, and one msgpack file
`checkpoint` (flax.serialization) of {"version": 3, "optimizer": {"target": ..., "state":
{"step", "param_states"}}} whose leaves are the arrays' TensorStore specs with paths relative
to the step directory. The weights are those of tests/testdata/hf_tiny_t5, so "loaded our
way" is the same weights read from the Hugging Face directory.
"""

import pathlib

import jax
import numpy as np
import pytest
import safetensors.numpy
from flax import serialization

from flan import convert
from flan.model import encoder_decoder, hf, network, partitioning, t5x
from flan.training import checkpoints

FIXTURE = pathlib.Path(__file__).parent / "testdata" / "hf_tiny_t5"


def _flatten(tree, prefix=()):
  if not isinstance(tree, dict):
    return {prefix: tree}
  out = {}
  for k, v in tree.items():
    out.update(_flatten(v, prefix + (k,)))
  return out


def _unflatten(flat):
  tree = {}
  for path, value in flat.items():
    node = tree
    for k in path[:-1]:
      node = node.setdefault(k, {})
    node[path[-1]] = value
  return tree


def write_t5x_checkpoint(
  model_dir: pathlib.Path, step: int, params: dict, *, kvstore_driver: str = "file"
) -> pathlib.Path:
  """Writes `params` (+ Adafactor-like moments) as t5x's legacy Checkpointer does.

  `kvstore_driver="gcs"` writes the specs as t5x does for a gs:// MODEL_DIR (a dummy bucket),
  which a reader must re-point at the checkpoint's own location.
  """
  import tensorstore as ts

  step_dir = model_dir / f"checkpoint_{step}"
  step_dir.mkdir(parents=True)
  state = {
    "target": params,
    "state": {
      "param_states": {
        "encoder": {
          "encoder_norm": {
            "scale": {"v": np.ones_like(params["encoder"]["encoder_norm"]["scale"]), "v_row": None}
          }
        }
      }
    },
  }
  written = {}
  for path, value in _flatten(state).items():
    name = "/".join(path)
    if value is None:  # t5x keeps empty optimizer slots as None in the msgpack tree
      written[path] = None
      continue
    value = np.asarray(value, np.float32)
    kvstore = (
      {"driver": "file", "path": name.replace("/", ".")}
      if kvstore_driver == "file"
      else {"driver": "gcs", "bucket": "t5x-dummy-bucket", "path": name.replace("/", ".")}
    )
    relative = {
      "driver": "zarr",
      "dtype": "float32",
      "kvstore": kvstore,
      "metadata": {
        "compressor": {"id": "gzip"},
        "shape": list(value.shape),
        "chunks": list(value.shape),
      },
    }
    absolute = {
      **relative,
      "kvstore": {"driver": "file", "path": str(step_dir / name.replace("/", "."))},
    }
    ts.open(absolute, create=True, open=True).result().write(value).result()
    written[path] = ts.Spec(relative).to_json()  # what flax.serialization stores for a ts.Spec
  tree = _unflatten(written)
  tree["state"]["step"] = np.asarray(step, np.int32)  # unpartitioned: inline in the msgpack
  (step_dir / "checkpoint").write_bytes(
    serialization.msgpack_serialize({"version": 3, "optimizer": tree})
  )
  return step_dir


@pytest.fixture(scope="module")
def hf_weights():
  return hf.params_from_hf(FIXTURE, dtype="float32")


def test_fixture_is_t5x_layout_on_disk(tmp_path, hf_weights):
  _, params = hf_weights
  step_dir = write_t5x_checkpoint(tmp_path, 1100000, params)
  names = {p.name for p in step_dir.iterdir()}
  assert "checkpoint" in names and "target.encoder.layers_0.attention.query.kernel" in names
  assert {"target.token_embedder.embedding", "target.decoder.logits_dense.kernel"} <= names
  assert (step_dir / "target.encoder.relpos_bias.rel_embedding" / ".zarray").is_file()
  contents = serialization.msgpack_restore((step_dir / "checkpoint").read_bytes())
  spec = contents["optimizer"]["target"]["encoder"]["layers_0"]["attention"]["query"]["kernel"]
  assert spec["kvstore"]["path"].rstrip("/") == "target.encoder.layers_0.attention.query.kernel"


@pytest.mark.parametrize("scan_layers", [False, True])
def test_t5x_checkpoint_reads_the_same_params_as_the_hf_directory(
  tmp_path, hf_weights, scan_layers
):
  config, params = hf_weights
  step_dir = write_t5x_checkpoint(tmp_path, 5, params)
  found, read = t5x.params_from_t5x(step_dir, dtype="float32", scan_layers=scan_layers)
  assert found == network.T5Config(**{**config.__dict__, "scan_layers": scan_layers})
  want = network.scan_layer_params(params, config) if scan_layers else params
  jax.tree.map(np.testing.assert_array_equal, read, want)


def test_t5x_checkpoint_through_the_restore_api_gives_the_same_logits(tmp_path, hf_weights):
  config, params = hf_weights
  write_t5x_checkpoint(tmp_path / "t5x_model_dir", 1100000, params)
  model = encoder_decoder.EncoderDecoderModel(config)
  mesh = partitioning.make_mesh({"data": 1, "model": 1}, devices=jax.local_devices()[:1])
  ours, _ = checkpoints.restore_params(model, mesh, FIXTURE)
  theirs, info = checkpoints.restore_params(model, mesh, tmp_path / "t5x_model_dir")
  assert info["step"] == 1100000 and info["path"].endswith("checkpoint_1100000")
  data = np.load(FIXTURE / "expected_logits.npz")
  logits = [
    np.asarray(
      jax.jit(
        lambda p: network.Transformer(config).apply(
          {"params": p},
          data["encoder_input_tokens"],
          data["decoder_input_tokens"],
          data["decoder_target_tokens"],
          enable_dropout=False,
        )
      )(p)
    )
    for p in (ours, theirs)
  ]
  np.testing.assert_array_equal(logits[1], logits[0])


def test_locate_tells_a_t5x_step_dir_its_file_and_its_model_dir(tmp_path, hf_weights):
  _, params = hf_weights
  write_t5x_checkpoint(tmp_path, 3, params)
  newest = write_t5x_checkpoint(tmp_path, 10, params)
  for path in (tmp_path, newest, newest / "checkpoint"):
    source = checkpoints.locate(path, "INITIAL_CHECKPOINT_PATH")
    assert source.kind == checkpoints.T5X and source.step == 10
    assert str(source.path) == str(newest) and str(source.model_dir) == str(tmp_path)


def test_specs_written_for_gcs_read_from_the_checkpoints_own_location(tmp_path, hf_weights):
  _, params = hf_weights
  step_dir = write_t5x_checkpoint(tmp_path, 1, params, kvstore_driver="gcs")
  _, read = t5x.params_from_t5x(step_dir, dtype="float32")
  jax.tree.map(np.testing.assert_array_equal, read, params)
  spec = {"driver": "zarr", "kvstore": {"driver": "file", "path": "target.x"}, "metadata": {}}
  remote = t5x._absolute_spec(spec, t5x.epath.Path("gs://my-bucket/run/checkpoint_7"))
  assert remote["kvstore"] == {
    "driver": "gcs",
    "bucket": "my-bucket",
    "path": "run/checkpoint_7/target.x",
  }


def test_t5_1_0_checkpoint_gets_scaled_untied_logits(tmp_path, hf_weights):
  _, params = hf_weights
  tied = {**params, "decoder": {k: v for k, v in params["decoder"].items() if k != "logits_dense"}}
  step_dir = write_t5x_checkpoint(tmp_path, 1, tied)
  _, read = t5x.params_from_t5x(step_dir)
  np.testing.assert_allclose(
    read["decoder"]["logits_dense"]["kernel"],
    params["token_embedder"]["embedding"].T / np.sqrt(32),
    rtol=1e-6,
  )


def test_a_t5x_checkpoint_of_another_size_is_one_clear_error(tmp_path, hf_weights):
  config, params = hf_weights
  write_t5x_checkpoint(tmp_path, 1, params)
  model = encoder_decoder.EncoderDecoderModel(
    network.T5Config(**{**config.__dict__, "mlp_dim": 48})
  )
  mesh = partitioning.make_mesh({"data": 1, "model": 1}, devices=jax.local_devices()[:1])
  with pytest.raises(checkpoints.CheckpointError, match="mlp_dim"):
    checkpoints.restore_params(model, mesh, tmp_path)


def test_convert_t5x_to_hf_and_to_flan(tmp_path, hf_weights):
  config, params = hf_weights
  step_dir = write_t5x_checkpoint(tmp_path / "t5x", 2, params)
  convert.main(["t5x_to_hf", "--t5x_checkpoint", str(step_dir), "--out", str(tmp_path / "hf")])
  original = safetensors.numpy.load_file(FIXTURE / "model.safetensors")
  for name, value in safetensors.numpy.load_file(tmp_path / "hf" / "model.safetensors").items():
    np.testing.assert_array_equal(value, original[name], err_msg=name)
  convert.main(["t5x_to_flan", "--t5x_checkpoint", str(step_dir), "--out", str(tmp_path / "flan")])
  assert checkpoints.locate(tmp_path / "flan", "--checkpoint").kind == checkpoints.PARAMS
  mesh = partitioning.make_mesh({"data": 1, "model": 1}, devices=jax.local_devices()[:1])
  again, _ = checkpoints.restore_params(
    encoder_decoder.EncoderDecoderModel(config), mesh, tmp_path / "flan"
  )
  jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, again), params)
  with pytest.raises(SystemExit, match="not a t5x checkpoint"):
    convert.main(
      ["t5x_to_hf", "--t5x_checkpoint", str(tmp_path / "hf"), "--out", str(tmp_path / "x")]
    )


def test_hf_pytorch_model_bin_loads_like_safetensors(tmp_path, hf_weights):
  torch = pytest.importorskip("torch")
  _, params = hf_weights
  tensors = safetensors.numpy.load_file(FIXTURE / "model.safetensors")
  torch.save(
    {
      k: torch.from_numpy(v.copy()).to(torch.bfloat16 if k == "shared.weight" else torch.float32)
      for k, v in tensors.items()
    },
    tmp_path / "pytorch_model.bin",
  )
  (tmp_path / "config.json").write_text((FIXTURE / "config.json").read_text())
  assert checkpoints.locate(tmp_path, "CHECKPOINT_PATH").kind == checkpoints.HF
  _, read = hf.params_from_hf(tmp_path, dtype="float32")
  embedding = read["token_embedder"]["embedding"]  # stored as bfloat16: rounded
  np.testing.assert_allclose(embedding, params["token_embedder"]["embedding"], rtol=1e-2)
  read["token_embedder"]["embedding"] = params["token_embedder"]["embedding"]
  jax.tree.map(np.testing.assert_array_equal, read, params)


@pytest.mark.usefixtures("clean_gin")
def test_initial_checkpoint_path_of_a_t5x_checkpoint_starts_from_its_weights(
  tmp_path, hf_weights, monkeypatch
):
  from test_train import _SmallVocabIterator
  from tiny_training import LENGTHS
  from tiny_training import train as run_train

  from flan.data import vocabularies
  from flan.training import optimizer as optimizer_lib

  config, params = hf_weights
  step_dir = write_t5x_checkpoint(tmp_path / "t5x", 1100000, params)
  monkeypatch.setattr(
    vocabularies,
    "get_vocabulary",  # the fixture's vocabulary has 96 ids
    lambda path: type("Vocab", (), {"vocab_size": 96})(),
  )
  frozen = lambda param_axes: optimizer_lib.make_optimizer(
    base_learning_rate=0.0, min_learning_rate=0.0, param_axes=param_axes
  )[0]
  out = run_train(
    model=encoder_decoder.EncoderDecoderModel(config),
    make_optimizer=frozen,
    mixture_or_task_name="synthetic",
    task_feature_lengths=LENGTHS,
    train_steps=1,
    model_dir=str(tmp_path / "run"),
    batch_size=8,
    checkpoint_period=1,
    make_iterator=_SmallVocabIterator,
    initial_checkpoint_path=str(step_dir),
  )
  assert out["source"] == f"initialised from t5x weights in {step_dir}"
  mesh = partitioning.make_mesh({"data": 1, "model": 1}, devices=jax.local_devices()[:1])
  trained, _ = checkpoints.restore_params(
    encoder_decoder.EncoderDecoderModel(config), mesh, tmp_path / "run"
  )
  jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, trained), params)
