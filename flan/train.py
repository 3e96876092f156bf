r"""Instruction-tune a T5 on a FLAN mixture: `python -m flan.train --gin_file=... --gin.X=V`.

  python -m flan.train --gin_file=configs/smoke.gin   # tiny T5, mock data, a few minutes
  python -m flan.train --gin_file=configs/experiments/holdout_nli.gin \
    --gin.MODEL_DIR=\"/tmp/flan_nli\" --gin.VOCABULARY=\"../shared/vocab/t5_spiece.model\" \
    --gin.INITIAL_CHECKPOINT_PATH=\"/ckpts/t5_1_1_lm100k_base\"

`train()` is the only gin-configurable function here: it assembles the parts (mesh,
vocabulary, data, state, step), runs the loop, and evaluates the held-out cluster at the
end. The loop's edges live in `flan.training.progress` (reporting) and `flan.training.preemption` (SIGTERM).
"""

from __future__ import annotations

if __name__ == "__main__":
  # Run the importable module, so that gin knows one `flan.train.train`, not a second
  # `__main__.train` that would make the selector `train` ambiguous.
  import sys

  from flan import train as _module

  sys.exit(_module.main())

import contextlib
import functools
import inspect
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import Any

import gin
import jax

from flan import evaluate as eval_lib  # registers its gin configurable before gin locks
from flan import logs
from flan.cli import parse_gin_flags, report_user_errors
from flan.errors import UserError
from flan.model import partitioning
from flan.training import checkpoints as checkpoints_lib
from flan.training import flops, preemption, run_lock, run_record
from flan.training import optimizer as optimizer_lib
from flan.training import progress as progress_lib
from flan.training import summaries as summaries_lib
from flan.training import train_step as trainer_lib

HOLDOUT_MIXTURE = re.compile(r"^flan_holdout_(\w+)_train$")


def _check_writable(model_dir: str) -> None:
  try:
    os.makedirs(model_dir, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=model_dir):
      pass
  except OSError as e:
    raise UserError(
      f"MODEL_DIR={model_dir!r} is not writable ({e.strerror}); set "
      "--gin.MODEL_DIR to a directory you can write to."
    ) from None


def _make_iterator(
  name, lengths, batch_size, seed, *, pack, data_dir, vocabulary, mesh, cache_dir=None
):
  """Registers the FLAN tasks for this vocabulary/data_dir and opens the train stream."""
  from flan.data import (
    input_pipeline,  # seqio/TensorFlow load only when training
    tasks,
  )

  logging.info("Registering the FLAN tasks (data_dir %s).", data_dir or "TFDS's default")
  tasks.register(data_dir=data_dir, vocabulary=vocabulary)
  tasks.get(name)  # an unknown name fails here, listing close matches
  tasks.check_prepared(name)  # every missing TFDS builder in one message
  shard, num_shards = partitioning.data_shard_info(mesh)
  return input_pipeline.make_train_iterator(
    name,
    lengths,
    batch_size,
    seed,
    pack=pack,
    shard_index=shard,
    num_shards=num_shards,
    cache_dir=cache_dir,
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
  data_dir,
  lengths,
  model_dir,
  batch_size,
  max_examples,
  num_templates,
  step,
  initial_checkpoint_path,
  runner=None,
) -> dict:
  """The held-out cluster's report in MODEL_DIR/eval (where `flan.evaluate` writes it too).

  With INITIAL_CHECKPOINT_PATH, its parameters are evaluated beside the tuned ones: the
  zero-shot baseline against the instruction-tuned model.
  """
  from flan.evaluation import holdout as evaluation

  baseline, baseline_info = None, None
  if initial_checkpoint_path:
    logging.info("Restoring the baseline %s for evaluation.", initial_checkpoint_path)
    baseline, baseline_info = eval_lib.restore_params(model, mesh, initial_checkpoint_path, lengths)
  logging.info(
    "Evaluating held-out cluster %r at step %d%s.",
    cluster,
    step,
    " against the initial checkpoint" if baseline is not None else "",
  )
  return evaluation.evaluate_cluster(
    model,
    params,
    mesh,
    cluster=cluster,
    vocabulary=vocabulary,
    data_dir=data_dir,
    feature_lengths=lengths,
    output_dir=os.path.join(model_dir, "eval"),
    batch_size=batch_size,
    baseline_params=baseline,
    max_examples=max_examples,
    num_templates=num_templates,
    runner=runner,
    metadata={"model_dir": model_dir, "step": step, "baseline_checkpoint": baseline_info},
  )


def _periodic_evaluator(
  model,
  mesh,
  *,
  cluster,
  vocabulary,
  data_dir,
  lengths,
  batch_size,
  max_examples,
  num_templates,
  initial_checkpoint_path,
):
  """The evaluator of the held-out cluster's subset every EVAL_PERIOD steps."""
  from flan.evaluation import periodic

  def load_baseline():
    logging.info("Restoring the baseline %s for evaluation.", initial_checkpoint_path)
    return eval_lib.restore_params(model, mesh, initial_checkpoint_path, lengths)[0]

  return periodic.PeriodicEvaluator(
    model,
    mesh,
    cluster=cluster,
    vocabulary=vocabulary,
    data_dir=data_dir,
    feature_lengths=lengths,
    batch_size=batch_size,
    max_examples=max_examples,
    num_templates=num_templates,
    load_baseline=load_baseline if initial_checkpoint_path else None,
  )


def _hparams(model, **settings) -> dict[str, Any]:
  """TensorBoard's hparams: these settings, the model's config, the optimizer's arguments
  as this run sets them (its defaults, then gin's bindings)."""
  fn = optimizer_lib.make_optimizer
  optimizer_args = {
    k: p.default
    for k, p in inspect.signature(fn).parameters.items()
    if p.default is not p.empty and k != "param_axes"
  }
  optimizer_args.update(gin.get_bindings(fn))
  return summaries_lib.hparams(settings, getattr(model, "config", None), optimizer_args)


def _compile(train_step, state, shapes, mesh, rng) -> float:
  """Compiles the train step ahead of the first batch; returns the seconds it took."""
  jitted = getattr(train_step, "jitted", None)
  if jitted is None:  # a step without the AOT handle compiles at its first call
    return 0.0
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  batch = {k: jax.ShapeDtypeStruct(s, "int32", sharding=sharding) for k, s in shapes.items()}
  logging.info("Compiling the train step.")
  tick = time.perf_counter()
  with partitioning.activation_rules(mesh):
    jitted.lower(state, batch, rng).compile()  # jit's cache keeps it for the first call
  seconds = time.perf_counter() - tick
  logging.info("Compiled the train step in %.1f s.", seconds)
  return seconds


@gin.configurable(denylist=["make_iterator"])
def train(
  *,
  model: Any = gin.REQUIRED,
  mixture_or_task_name: str = gin.REQUIRED,
  task_feature_lengths: Mapping[str, int] = gin.REQUIRED,
  train_steps: int = gin.REQUIRED,
  model_dir: str = gin.REQUIRED,
  batch_size: int = 128,
  initial_checkpoint_path: str | None = None,
  data_dir: str | None = None,
  vocabulary: str | None = None,
  random_seed: int = 0,
  mesh: Mapping[str, int] | None = None,
  fsdp: bool = False,
  pack: bool = True,
  num_microbatches: int = 1,
  nan_policy: str = "stop",
  checkpoint_period: int = 1000,
  keep_checkpoints: int | None = None,
  log_every: int = 100,
  use_mock_data: bool = False,
  mock_num_examples: int = 64,
  heldout_cluster: str | None = None,
  run_heldout_eval: bool = True,
  eval_batch_size: int = 32,
  eval_max_examples: int | None = None,
  eval_num_templates: int | None = None,
  eval_period: int | None = None,
  evaluator_num_examples: int | None = None,
  preemption_grace_seconds: float = 120.0,
  max_consecutive_skips: int = 100,
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
  cache_dir: str | None = None,
  make_iterator: Callable[..., Any] | None = None,
) -> dict[str, Any]:
  """Trains `model` for `train_steps` (absolute: a resume continues to the same end).

  Args mirror the gin macros (MODEL, MIXTURE_OR_TASK_NAME, TASK_FEATURE_LENGTHS,
  TRAIN_STEPS, MODEL_DIR, BATCH_SIZE, INITIAL_CHECKPOINT_PATH, DATA_DIR, VOCABULARY,
  RANDOM_SEED, MESH, USE_MOCK_DATA, HELDOUT_CLUSTER, ...). Notable ones:
    use_mock_data: synthetic TFDS examples (tfds.testing.mock_data) unless DATA_DIR is set.
    nan_policy: "stop" raises at the first non-finite step (checkpoints stay good) or "skip".
    max_consecutive_skips: with "skip", more skipped updates in a row than this stop the run.
    heldout_cluster: evaluated at the end; derived from a flan_holdout_<c>_train mixture.
    run_heldout_eval: False skips that evaluation (e.g. when `flan.evaluate` runs it apart).
    cache_dir: the token cache (CACHE_DIR; `flan.data.token_cache`, built ahead by
      `scripts/prepare_data.py --cache`); None: every start reads and tokenizes the data.
    eval_period: every this many steps, evaluate the held-out cluster on a fixed subset
      (t5x's infer-eval) into MODEL_DIR/inference_eval; None or 0: never. Independent of
      run_heldout_eval, which is about the full evaluation at the end.
    evaluator_num_examples: that subset: the first N examples of each split (None: all).
    make_iterator: tests only: a replacement for the FLAN input pipeline, same signature.

  Returns:
    {"step", "source", "first_loss", "history" (periodic stats), "eval" (held-out results
    or None), "preempted"}.
  """
  partitioning.initialize_distributed(coordinator_address, num_processes, process_id)
  model_dir = os.path.expandvars(os.path.expanduser(model_dir))  # smoke.gin's ~/flan_smoke
  if heldout_cluster:  # fail now, not after training, on a misspelt cluster
    from flan.data import clusters

    clusters.check_cluster(heldout_cluster)
  _check_writable(model_dir)
  config_gin = gin.config_str()  # as parsed; written once the run is validated and locked
  device_mesh = partitioning.make_mesh(mesh)
  partitioning.check_batch_size(batch_size, device_mesh)
  lengths = dict(task_feature_lengths)
  from flan.data import vocabularies

  vocab = vocabularies.get_vocabulary(vocabulary)
  if vocab.vocab_size > model.config.vocab_size:
    raise UserError(
      f"The vocabulary has {vocab.vocab_size} ids but the model's vocab_size is "
      f"{model.config.vocab_size}; use a model gin sized for this vocabulary."
    )
  init_rng, step_rng = jax.random.split(jax.random.PRNGKey(random_seed))
  optimizer, schedule = optimizer_lib.make_optimizer(param_axes=model.param_logical_specs())
  guard = trainer_lib.NanGuard(nan_policy, max_consecutive_skips)
  match = HOLDOUT_MIXTURE.match(mixture_or_task_name)
  cluster = heldout_cluster or (match.group(1) if match else None)
  if eval_period and not cluster:
    logging.warning(
      "EVAL_PERIOD=%d but there is no held-out cluster to evaluate (set "
      "HELDOUT_CLUSTER); no evaluation during training.",
      eval_period,
    )
    eval_period = None
  hparams = _hparams(
    model,
    mixture_or_task_name=mixture_or_task_name,
    task_feature_lengths=lengths,
    train_steps=train_steps,
    batch_size=batch_size,
    random_seed=random_seed,
    initial_checkpoint_path=initial_checkpoint_path,
    vocabulary=vocabulary,
    mesh=dict(device_mesh.shape),
    fsdp=fsdp,
    pack=pack,
    num_microbatches=num_microbatches,
    heldout_cluster=cluster,
    eval_period=eval_period,
  )

  with contextlib.ExitStack() as stack:
    lock = stack.enter_context(run_lock.hold(model_dir))  # one trainer per MODEL_DIR
    signals = stack.enter_context(
      preemption.PreemptionHandler(preemption_grace_seconds, on_abort=lock.release)
    )
    summaries = summaries_lib.Summaries(model_dir)
    stack.callback(summaries.close)
    if use_mock_data and data_dir is None:
      import tensorflow_datasets as tfds

      stack.enter_context(
        tfds.testing.mock_data(num_examples=mock_num_examples, max_value=3)
      )  # small ints keep label-indexed data
    tick = time.perf_counter()
    it = (make_iterator or functools.partial(_make_iterator, cache_dir=cache_dir))(
      mixture_or_task_name,
      lengths,
      batch_size,
      random_seed,
      pack=pack,
      data_dir=data_dir,
      vocabulary=vocab,
      mesh=device_mesh,
    )
    stack.callback(getattr(it, "close", lambda: None))
    shapes = {k: (batch_size,) + tuple(s[1:]) for k, s in it.batch_shapes().items()}
    timing = {"timing/dataset_loading_seconds": time.perf_counter() - tick}  # ours
    tick = time.perf_counter()
    ckpts = checkpoints_lib.Checkpoints(model_dir, period=checkpoint_period, keep=keep_checkpoints)
    stack.callback(ckpts.close)
    if ckpts.steps():  # resuming: the vocabulary must be the one the checkpoints learnt
      run_record.check_vocabulary(model_dir, vocabularies.fingerprint(vocabulary))
    state, shardings, source = _restore_or_initialize(
      model,
      optimizer,
      device_mesh,
      init_rng,
      shapes,
      ckpts,
      it,
      fsdp=fsdp,
      initial_checkpoint_path=initial_checkpoint_path,
    )
    start = int(state.step)
    logging.info("Train state %s (step %d of %d).", source, start, train_steps)
    timing["timing/init_or_restore_seconds"] = time.perf_counter() - tick
    if jax.process_index() == 0:  # validated, locked, restored: now this run owns MODEL_DIR
      run_record.write(
        model_dir,
        model_config=model.config,
        feature_lengths=lengths,
        vocabulary=vocabularies.fingerprint(vocabulary),
        config_gin=config_gin,
      )
    if signals.requested():  # signalled while the data or the state loaded
      logging.warning("Stopped before the first step (%s); exiting.", source)
      return {
        "step": start,
        "source": source,
        "first_loss": None,
        "history": [],
        "eval": None,
        "preempted": True,
      }
    signals.phase = preemption.TRAIN
    summaries.hparams(hparams)
    summaries.texts(summaries_lib.TRAIN, start, {"config": gin.markdown(gin.config_str())})
    train_step = trainer_lib.make_train_step(
      model,
      optimizer,
      mesh=device_mesh,
      shardings=shardings,
      schedule=schedule,
      num_microbatches=num_microbatches,
      nan_policy=nan_policy,
    )
    timing["timing/compilation_seconds"] = _compile(
      train_step, state, shapes, device_mesh, step_rng
    )
    infer_eval = None
    if eval_period:
      infer_eval = _periodic_evaluator(
        model,
        device_mesh,
        cluster=cluster,
        vocabulary=vocab,
        data_dir=data_dir,
        lengths=lengths,
        batch_size=eval_batch_size,
        max_examples=evaluator_num_examples,
        num_templates=eval_num_templates,
        initial_checkpoint_path=initial_checkpoint_path,
      )
    progress = progress_lib.Progress(
      total_steps=train_steps,
      start_step=start,
      log_every=log_every,
      writer=summaries.writer(summaries_lib.TRAIN),
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
    # Every host's own input position goes in (a collective: all hosts save together).
    save = lambda s: ckpts.save(s, state, checkpoints_lib.gather_dataset_states(it.state()))

    # `pending`: the previous step's metrics, checked one step late (no pipeline stall).
    pending, preempted = None, False
    for step in range(start + 1, train_steps + 1):
      tick = time.perf_counter()
      batch = partitioning.shard_batch(next(it), device_mesh)
      if step == start + 1:  # t5x's name for the wait for the first batch
        timing["timing/train_iter_warmup"] = time.perf_counter() - tick
        summaries.scalars(summaries_lib.TRAIN, start, timing)
      state, metrics = train_step(state, batch, step_rng)
      if pending is not None:
        guard.check(pending, step - 1)
      pending = metrics
      progress.update(step, metrics)
      if step == start + 1 and jax.process_index() == 0:
        with open(os.path.join(model_dir, "operative_config.gin"), "w") as f:
          f.write(gin.operative_config_str())
        summaries.texts(
          summaries_lib.TRAIN, step, {"operative_config": gin.markdown(gin.operative_config_str())}
        )
      preempted = signals.requested()
      if preempted or ckpts.should_save(step) or step == train_steps:
        guard.check(metrics, step)
        guard.check_state(state, step)
        tick = time.perf_counter()
        save(step)
        summaries.scalars(
          summaries_lib.TRAIN, step, {"timing/checkpoint_seconds": time.perf_counter() - tick}
        )
      if infer_eval is not None and not preempted and step % eval_period == 0:
        logging.info("Evaluating the held-out cluster's subset at step %d.", step)
        tick = time.perf_counter()
        summaries.eval_results(
          summaries_lib.INFERENCE_EVAL, step, infer_eval.evaluate(state.params, step)
        )
        seconds = time.perf_counter() - tick
        summaries.scalars(summaries_lib.TRAIN, step, {"timing/evaluate_seconds": seconds})
        progress.exclude(seconds)
      if preempted:
        logging.warning("Preempted: saving %s/checkpoint_%d and exiting.", model_dir, step)
        break

    ckpts.wait()
    preempted = preempted or signals.requested()  # a signal during the last save: no eval
    logging.info("Checkpoints written to %s (newest: step %d).", model_dir, int(state.step))
    step = int(state.step)
    results = None
    if cluster and run_heldout_eval and not preempted:
      signals.phase, signals.saved = preemption.EVALUATION, f"{model_dir}/checkpoint_{step}"
      try:
        results = _evaluate(
          model,
          state.params,
          device_mesh,
          cluster=cluster,
          vocabulary=vocab,
          data_dir=data_dir,
          lengths=lengths,
          model_dir=model_dir,
          batch_size=eval_batch_size,
          max_examples=eval_max_examples,
          num_templates=eval_num_templates,
          step=step,
          initial_checkpoint_path=initial_checkpoint_path,
          runner=infer_eval.runner if infer_eval is not None else None,
        )
      except preemption.EvaluationInterrupted:
        preempted = True
      else:
        summaries.eval_results(summaries_lib.FINAL_EVAL, step, results["models"])
      signals.phase = preemption.FINISHING
  return {
    "step": step,
    "source": source,
    "first_loss": progress.first_loss,
    "history": progress.history,
    "eval": results,
    "preempted": preempted,
  }


def main(argv: list[str] | None = None) -> int:
  """Entry point: parse gin flags, run `train()`, turn user errors into one message."""
  logs.setup()  # our log format; library noise off unless FLAN_VERBOSE_LIBS=1
  with report_user_errors():
    logging.info("Reading the gin config (and loading seqio and TensorFlow).")
    parse_gin_flags(
      argv,
      prog="python -m flan.train",
      doc=__doc__,
      run_config="configs/runs/finetune.gin",
      entry=train,
    )
    train()
    return 0
  return 1
