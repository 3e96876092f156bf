r"""Instruction-tune a T5 on a FLAN mixture: `python -m flan.train --gin_file=... --gin.X=V`.

  python -m flan.train --gin_file=configs/smoke.gin   # tiny T5, mock data, a few minutes
  python -m flan.train --gin_file=configs/experiments/holdout_nli.gin \
    --gin.MODEL_DIR=\"/tmp/flan_nli\" --gin.VOCABULARY=\"../shared/vocab/t5_spiece.model\" \
    --gin.INITIAL_CHECKPOINT_PATH=\"/ckpts/t5_1_1_lm100k_base\"

`train()` assembles the parts (mesh, vocabulary, data, state, step), runs the loop, and
evaluates the held-out cluster at the end. It is a plain function of its options
(`flan.training.options`); `main` makes it and its options gin-configurable (t5x's
`gin.configurable(train)` in `main`), the one place gin reaches into the library. The loop's
edges live in `flan.training.progress` (reporting) and `flan.training.preemption` (SIGTERM).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Callable
from typing import Any

import gin
import jax

from flan import paths
from flan.cli import parse_gin_flags, report_user_errors
from flan.errors import UserError
from flan.model import partitioning
from flan.training import checkpoints as checkpoints_lib
from flan.training import flops, preemption
from flan.training import optimizer as optimizer_lib
from flan.training import progress as progress_lib
from flan.training import train_step as trainer_lib
from flan.training.options import CheckpointOptions, DataOptions, HeldoutEvalOptions, RunOptions

HOLDOUT_MIXTURE = re.compile(r"^flan_holdout_(\w+)_train$")


def _check_writable(model_dir: str) -> None:
  """Creates MODEL_DIR (local or remote, through `flan.paths`) and writes a probe file in it."""
  probe = paths.path(model_dir) / f".write_probe_{os.getpid()}_{jax.process_index()}"
  try:
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_text("")
    probe.unlink()
  except OSError as e:
    raise UserError(
      f"MODEL_DIR={model_dir!r} is not writable ({e.strerror or e}); set "
      "--gin.MODEL_DIR to a directory you can write to."
    ) from None


def _import_task_modules(modules) -> None:
  """Imports MIXTURE_OR_TASK_MODULE (t5x's macro): user modules that register seqio tasks.

  They are imported after FLAN's tasks are registered for this run, so a user mixture that
  names FLAN tasks holds this run's versions of them.
  """
  import importlib

  for module in modules or ():
    try:
      importlib.import_module(module)
    except ImportError as e:
      raise UserError(
        f"MIXTURE_OR_TASK_MODULE {module!r} cannot be imported ({e}); put its "
        "directory on PYTHONPATH or fix the name."
      ) from None


def _make_iterator(name, lengths, batch_size, seed, *, pack, data, vocabulary, mesh):
  """Registers the FLAN tasks for these data options, imports the user's task modules and
  opens the train stream of any registered seqio task or mixture."""
  from flan.data import (
    input_pipeline,  # seqio/TensorFlow load only when training
    tasks,
  )

  tasks.register(vocabulary=vocabulary, **data.registration())
  _import_task_modules(data.mixture_or_task_module)
  tasks.get(name)  # an unknown name fails here, listing close matches
  shard, num_shards = partitioning.data_shard_info(mesh)
  return input_pipeline.make_train_iterator(
    name, lengths, batch_size, seed, pack=pack, shard_index=shard, num_shards=num_shards
  )


def _restore_or_initialize(
  model, optimizer, mesh, rng, shapes, ckpts, it, *, fsdp, initial_checkpoint_path
):
  """(state, shardings, source): resumed (with the data position), imported, or fresh."""
  init = lambda params: trainer_lib.create_train_state(
    model, optimizer, mesh, rng, shapes, fsdp=fsdp, params=params
  )[0]
  state_shape = trainer_lib.train_state_shapes(model, optimizer, rng, shapes)
  shardings = trainer_lib.state_shardings(model, optimizer, mesh, state_shape, fsdp=fsdp)
  state, data_state, source = checkpoints_lib.restore_or_initialize(
    ckpts,
    checkpoints_lib.abstract_state(state_shape, shardings),
    init_state=init,
    initial_checkpoint_path=initial_checkpoint_path,
    model_config=model.config,
  )
  if data_state:  # this host's own position (each host reads its own shard)
    it.restore(checkpoints_lib.own_dataset_state(data_state, source))
  return state, shardings, source


def _evaluate(
  model,
  params,
  mesh,
  *,
  cluster,
  vocabulary,
  data,
  evaluation,
  model_dir,
  step,
  initial_checkpoint_path,
) -> dict:
  """The held-out cluster's report in MODEL_DIR/eval (where `flan.evaluate` writes it too).

  With INITIAL_CHECKPOINT_PATH, its parameters are evaluated beside the tuned ones: the
  zero-shot baseline against the instruction-tuned model.
  """
  from flan.evaluation import holdout

  lengths = dict(data.task_feature_lengths)
  baseline, baseline_info = None, None
  if initial_checkpoint_path:
    baseline, baseline_info = checkpoints_lib.restore_params(
      model, mesh, initial_checkpoint_path, setting="INITIAL_CHECKPOINT_PATH"
    )
  logging.info(
    "Evaluating held-out cluster %r at step %d%s.",
    cluster,
    step,
    " against the initial checkpoint" if baseline is not None else "",
  )
  return holdout.evaluate_cluster(
    model,
    params,
    mesh,
    cluster=cluster,
    vocabulary=vocabulary,
    data_dir=data.data_dir,
    feature_lengths=lengths,
    output_dir=str(paths.path(model_dir) / "eval"),
    batch_size=evaluation.eval_batch_size,
    baseline_params=baseline,
    max_examples=evaluation.eval_max_examples,
    num_templates=evaluation.eval_num_templates,
    metadata={"model_dir": model_dir, "step": step, "baseline_checkpoint": baseline_info},
  )


def train(
  *,
  model: Any,
  make_optimizer: Callable[..., Any],
  data: DataOptions,
  run: RunOptions,
  checkpoint: CheckpointOptions | None = None,
  evaluation: HeldoutEvalOptions | None = None,
  make_iterator: Callable[..., Any] | None = None,
) -> dict[str, Any]:
  """Trains `model` for `run.train_steps` (absolute: a resume continues to the same end).

  Args:
    model: an `EncoderDecoderModel` (the MODEL macro).
    make_optimizer: `param_axes -> optax transformation`, called with the model's
      `param_logical_specs()` (t5x sets an optimizer's parameter axes from the model the same
      way): the OPTIMIZER macro, `@optimizer.adafactor` uncalled. flan's Adafactor carries
      its `learning_rate_schedule`, which is logged.
    data, run, checkpoint, evaluation: the run's options, each field named for its gin
      macro (see `flan.training.options`); None: the defaults of that option class.
    make_iterator: tests only: a replacement for the FLAN input pipeline, same signature.

  Returns:
    {"step", "source", "first_loss", "history" (periodic stats), "eval" (held-out results
    or None), "preempted"}.
  """
  checkpoint = checkpoint or CheckpointOptions()
  evaluation = evaluation or HeldoutEvalOptions()
  partitioning.initialize_distributed(run.coordinator_address, run.num_processes, run.process_id)
  if evaluation.heldout_cluster:  # fail now, not after training, on a misspelt cluster
    from flan.data import clusters

    clusters.check_cluster(evaluation.heldout_cluster)
  # The optimizer checks its settings (LEARNING_RATE, ...) before anything is written.
  optimizer = make_optimizer(param_axes=model.param_logical_specs())
  schedule = getattr(optimizer, "learning_rate_schedule", None)
  model_dir = run.model_dir
  _check_writable(model_dir)
  if jax.process_index() == 0:
    (paths.path(model_dir) / "config.gin").write_text(gin.config_str())
  device_mesh = partitioning.make_mesh(run.mesh)
  batch_size = data.batch_size
  partitioning.check_batch_size(batch_size, device_mesh)
  lengths = dict(data.task_feature_lengths)
  from flan.data import vocabularies

  vocab = vocabularies.get_vocabulary(data.vocabulary)
  if vocab.vocab_size > model.config.vocab_size:
    raise UserError(
      f"The vocabulary has {vocab.vocab_size} ids but the model's vocab_size is "
      f"{model.config.vocab_size}; use a model gin sized for this vocabulary."
    )
  init_rng, step_rng = jax.random.split(jax.random.PRNGKey(run.random_seed))

  with contextlib.ExitStack() as stack:
    if data.use_mock_data and data.data_dir is None:
      import tensorflow_datasets as tfds

      stack.enter_context(
        tfds.testing.mock_data(num_examples=data.mock_num_examples, max_value=3)
      )  # small ints keep label-indexed data
    it = (make_iterator or _make_iterator)(
      data.mixture_or_task_name,
      lengths,
      batch_size,
      run.random_seed,
      pack=data.pack,
      data=data,
      vocabulary=vocab,
      mesh=device_mesh,
    )
    stack.callback(getattr(it, "close", lambda: None))
    shapes = {k: (batch_size,) + tuple(s[1:]) for k, s in it.batch_shapes().items()}
    ckpts = checkpoints_lib.Checkpoints(
      model_dir, period=checkpoint.checkpoint_period, keep=checkpoint.keep_checkpoints
    )
    stack.callback(ckpts.close)
    state, shardings, source = _restore_or_initialize(
      model,
      optimizer,
      device_mesh,
      init_rng,
      shapes,
      ckpts,
      it,
      fsdp=run.fsdp,
      initial_checkpoint_path=checkpoint.initial_checkpoint_path,
    )
    start = int(state.step)
    train_steps = run.train_steps
    logging.info("Train state %s (step %d of %d).", source, start, train_steps)
    train_step = trainer_lib.make_train_step(
      model,
      optimizer,
      mesh=device_mesh,
      shardings=shardings,
      schedule=schedule,
      num_microbatches=run.num_microbatches,
      nan_policy=run.nan_policy,
    )
    progress = progress_lib.Progress(
      total_steps=train_steps,
      start_step=start,
      log_every=run.log_every,
      model_dir=model_dir,
      flops_per_step=flops.train_step_flops(
        model.config,
        batch_size=batch_size,
        input_length=lengths["inputs"],
        target_length=lengths["targets"],
      ),
      peak_flops=flops.peak_flops_per_device(jax.devices()[0]),
      data_stats=lambda: it.stats,
    )
    stack.callback(progress.close)
    signals = stack.enter_context(preemption.PreemptionHandler(run.preemption_grace_seconds))
    # Every host's own input position goes in (a collective: all hosts save together).
    save = lambda s: ckpts.save(s, state, checkpoints_lib.gather_dataset_states(it.state()))
    stop_on_nan = run.nan_policy == "stop"

    # `pending`: the previous step's metrics, checked one step late (no pipeline stall).
    pending, preempted = None, False
    for step in range(start + 1, train_steps + 1):
      batch = partitioning.shard_batch(next(it), device_mesh)
      state, metrics = train_step(state, batch, step_rng)
      if stop_on_nan and pending is not None:
        trainer_lib.check_finite(pending, step - 1)
      pending = metrics
      progress.update(step, metrics)
      if step == start + 1 and jax.process_index() == 0:
        (paths.path(model_dir) / "operative_config.gin").write_text(gin.operative_config_str())
      preempted = signals.requested()
      if preempted or ckpts.should_save(step) or step == train_steps:
        if stop_on_nan:
          trainer_lib.check_finite(metrics, step)
        save(step)
      if preempted:
        logging.warning("Preempted: saving %s/checkpoint_%d and exiting.", model_dir, step)
        break

    ckpts.wait()
    step = int(state.step)
    match = HOLDOUT_MIXTURE.match(data.mixture_or_task_name)
    cluster = evaluation.heldout_cluster or (match.group(1) if match else None)
    results = None
    if cluster and evaluation.run_heldout_eval and not preempted:
      results = _evaluate(
        model,
        state.params,
        device_mesh,
        cluster=cluster,
        vocabulary=vocab,
        data=data,
        evaluation=evaluation,
        model_dir=model_dir,
        step=step,
        initial_checkpoint_path=checkpoint.initial_checkpoint_path,
      )
  return {
    "step": step,
    "source": source,
    "first_loss": progress.first_loss,
    "history": progress.history,
    "eval": results,
    "preempted": preempted,
  }


def configurable_train() -> Callable[..., dict[str, Any]]:
  """`train` as gin configures it, with its options and the optimizer registered.

  Called by `main` before the gin files are parsed: the library stays gin-free. The options
  bind as `DataOptions.batch_size = %BATCH_SIZE`, ... (configs/runs/finetune.gin).
  """
  for options in (DataOptions, RunOptions, CheckpointOptions, HeldoutEvalOptions):
    gin.external_configurable(options, module="flan.training.options")
  gin.external_configurable(
    optimizer_lib.adafactor, module="flan.training.optimizer", denylist=["param_axes"]
  )  # train() passes the model's
  gin.external_configurable(optimizer_lib.learning_rate_schedule, module="flan.training.optimizer")
  return gin.external_configurable(train, module="flan.train", denylist=["make_iterator"])


def main(argv: list[str] | None = None) -> int:
  """Entry point: parse gin flags, run `train()`, turn user errors into one message."""
  # force: absl (imported by JAX/TF) has already put a handler on the root logger.
  logging.basicConfig(
    level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True
  )
  for noisy in ("absl", "jax", "tensorflow"):  # TFDS/orbax chatter at INFO goes through absl
    logging.getLogger(noisy).setLevel(logging.WARNING)
  with report_user_errors():
    run = configurable_train()
    parse_gin_flags(argv)
    run()
    return 0
  return 1


if __name__ == "__main__":
  import sys

  sys.exit(main())
