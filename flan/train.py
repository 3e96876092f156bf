r"""Instruction-tune a T5 on a FLAN mixture: `python -m flan.train --gin_file=... --gin.X=V`.

  python -m flan.train --gin_file=configs/smoke.gin   # tiny T5, mock data, a few minutes
  python -m flan.train --gin_file=configs/experiments/holdout_nli.gin \
    --gin.MODEL_DIR=\"/tmp/flan_nli\" --gin.VOCABULARY=\"../shared/vocab/t5_spiece.model\" \
    --gin.INITIAL_CHECKPOINT_PATH=\"/ckpts/t5_1_1_lm100k_base\"

`train()` assembles the parts (mesh, vocabulary, data, state, step), runs the loop, and
evaluates the held-out cluster at the end. It is a plain function of its options
(`flan.training.options`); `main` makes it and its options gin-configurable (t5x's
`gin.configurable(train)` in `main`), the one place gin reaches into the library.

A run holds MODEL_DIR's lock (`flan.training.run_lock`) from setup to exit, and writes its
record (`model_config.json`, `config.gin`: `flan.training.run_record`) only once it is
validated, locked and restored. The loop (`_Loop`) is short; its edges live in
`flan.training.progress` (reporting), `flan.training.summaries` (TensorBoard),
`flan.training.preemption` (SIGTERM / Ctrl-C in every phase),
`flan.training.train_step.NanGuard` (NAN_POLICY) and `flan.evaluation.periodic` (EVAL_PERIOD).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
import os
import re
import time
from collections.abc import Callable
from typing import Any

import gin
import jax

from flan import logs, paths
from flan.cli import parse_gin_flags, report_user_errors
from flan.errors import UserError
from flan.model import partitioning
from flan.training import checkpoints as checkpoints_lib
from flan.training import flops, preemption, run_lock, run_record
from flan.training import optimizer as optimizer_lib
from flan.training import progress as progress_lib
from flan.training import summaries as summaries_lib
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


def _heldout_cluster(data: DataOptions, evaluation: HeldoutEvalOptions) -> str | None:
  """HELDOUT_CLUSTER, else the one a flan_holdout_<c>_train mixture holds out; a misspelt
  cluster fails now, not after training."""
  if evaluation.heldout_cluster:
    from flan.data import clusters

    clusters.check_cluster(evaluation.heldout_cluster)
    return evaluation.heldout_cluster
  match = HOLDOUT_MIXTURE.match(data.mixture_or_task_name)
  return match.group(1) if match else None


def _vocabulary(data: DataOptions, model: Any) -> tuple[Any, dict[str, Any]]:
  """(the seqio vocabulary, its fingerprint for the run record), checked against the model."""
  from flan.data import vocabularies

  vocab = vocabularies.get_vocabulary(data.vocabulary)
  if vocab.vocab_size > model.config.vocab_size:
    raise UserError(
      f"The vocabulary has {vocab.vocab_size} ids but the model's vocab_size is "
      f"{model.config.vocab_size}; use a model gin sized for this vocabulary."
    )
  return vocab, vocabularies.fingerprint(data.vocabulary)


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
  opens the train stream of any registered seqio task or mixture (through CACHE_DIR's token
  cache when it is set)."""
  from flan.data import (
    input_pipeline,  # seqio/TensorFlow load only when training
    tasks,
  )

  logging.info("Registering the FLAN tasks (data_dir %s).", data.data_dir or "TFDS's default")
  tasks.register(vocabulary=vocabulary, **data.registration())
  _import_task_modules(data.mixture_or_task_module)
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
    cache_dir=data.cache_dir,
  )


def _open_data(stack, data, run, vocab, mesh, make_iterator) -> tuple[Any, dict, float]:
  """(the train stream, closed by `stack`; its global batch shapes; the seconds it took)."""
  tick = time.perf_counter()
  if data.use_mock_data and data.data_dir is None:
    import tensorflow_datasets as tfds

    stack.enter_context(
      tfds.testing.mock_data(num_examples=data.mock_num_examples, max_value=3)
    )  # small ints keep label-indexed data
  it = (make_iterator or _make_iterator)(
    data.mixture_or_task_name,
    dict(data.task_feature_lengths),
    data.batch_size,
    run.random_seed,
    pack=data.pack,
    data=data,
    vocabulary=vocab,
    mesh=mesh,
  )
  stack.callback(getattr(it, "close", lambda: None))
  shapes = {k: (data.batch_size,) + tuple(s[1:]) for k, s in it.batch_shapes().items()}
  return it, shapes, time.perf_counter() - tick


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


def _restore_baseline(model, mesh, initial_checkpoint_path) -> tuple[Any, dict[str, Any]]:
  """INITIAL_CHECKPOINT_PATH's parameters, the zero-shot baseline of the evaluations."""
  logging.info("Restoring the baseline %s for evaluation.", initial_checkpoint_path)
  return checkpoints_lib.restore_params(
    model, mesh, initial_checkpoint_path, setting="INITIAL_CHECKPOINT_PATH"
  )


def _baseline_cache(model, data, saved):
  """The results cache of the baseline `saved` (a `SavedWeights`) under CACHE_DIR
  (`flan.evaluation.baseline_cache.open_cache`)."""
  from flan.evaluation import baseline_cache

  mock = data.use_mock_data and data.data_dir is None
  return baseline_cache.open_cache(data.cache_dir, saved, model.config, mock_data=mock)


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
  runner=None,
) -> dict:
  """The held-out cluster's report in MODEL_DIR/eval (where `flan.evaluate` writes it too).

  With INITIAL_CHECKPOINT_PATH, its parameters are evaluated beside the tuned ones: the
  zero-shot baseline against the instruction-tuned model. `runner`: the periodic
  evaluation's `ModelRunner`, whose compiled functions are reused.
  """
  from flan.evaluation import holdout

  baseline, baseline_info, cache = None, None, None
  if initial_checkpoint_path:
    # Restored only when evaluated: a cached baseline result is reused without it.
    baseline = lambda: _restore_baseline(model, mesh, initial_checkpoint_path)[0]
    saved = checkpoints_lib.locate(initial_checkpoint_path, "INITIAL_CHECKPOINT_PATH")
    baseline_info, cache = saved.info(), _baseline_cache(model, data, saved)
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
    feature_lengths=dict(data.task_feature_lengths),
    output_dir=str(paths.path(model_dir) / summaries_lib.FINAL_EVAL),
    batch_size=evaluation.eval_batch_size,
    baseline_params=baseline,
    max_examples=evaluation.eval_max_examples,
    num_templates=evaluation.eval_num_templates,
    runner=runner,
    metadata={"model_dir": model_dir, "step": step, "baseline_checkpoint": baseline_info},
    baseline_cache=cache,
  )


def _periodic_evaluator(model, mesh, *, cluster, vocabulary, data, evaluation, checkpoint):
  """The evaluator of the held-out cluster's subset every EVAL_PERIOD steps."""
  from flan.evaluation import periodic

  path = checkpoint.initial_checkpoint_path
  cache = None
  if path:
    saved = checkpoints_lib.locate(path, "INITIAL_CHECKPOINT_PATH")
    cache = _baseline_cache(model, data, saved)
  return periodic.PeriodicEvaluator(
    model,
    mesh,
    cluster=cluster,
    vocabulary=vocabulary,
    data_dir=data.data_dir,
    feature_lengths=dict(data.task_feature_lengths),
    batch_size=evaluation.eval_batch_size,
    max_examples=evaluation.evaluator_num_examples,
    num_templates=evaluation.eval_num_templates,
    load_baseline=(lambda: _restore_baseline(model, mesh, path)[0]) if path else None,
    baseline_cache=cache,
  )


def _configured_args(fn: Callable[..., Any]) -> dict[str, Any]:
  """`fn`'s arguments as this run sets them: its defaults, then gin's bindings (if any)."""
  try:
    params = inspect.signature(fn).parameters
  except (TypeError, ValueError):
    params = {}
  args = {k: p.default for k, p in params.items() if p.default is not p.empty}
  with contextlib.suppress(ValueError, KeyError, TypeError):  # not a gin configurable
    args.update(gin.get_bindings(fn))
  args.pop("param_axes", None)  # the model's, not a setting
  return args


def _hparams(model, make_optimizer, cluster, eval_period, mesh, *, data, run, checkpoint):
  """TensorBoard's hparams: the run's settings, the model's config, the optimizer's
  arguments (with its learning-rate schedule's, when it follows one)."""
  optimizer_args = _configured_args(make_optimizer)
  if callable(optimizer_args.get("learning_rate")):  # a schedule: its settings instead
    del optimizer_args["learning_rate"]
    for k, v in _configured_args(optimizer_lib.learning_rate_schedule).items():
      optimizer_args[f"schedule_{k}" if k in optimizer_args else k] = v
  settings = dict(
    mixture_or_task_name=data.mixture_or_task_name,
    task_feature_lengths=dict(data.task_feature_lengths),
    train_steps=run.train_steps,
    batch_size=data.batch_size,
    random_seed=run.random_seed,
    initial_checkpoint_path=checkpoint.initial_checkpoint_path,
    vocabulary=data.vocabulary,
    mesh=dict(mesh.shape),
    fsdp=run.fsdp,
    pack=data.pack,
    num_microbatches=run.num_microbatches,
    heldout_cluster=cluster,
    eval_period=eval_period,
  )
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


@dataclasses.dataclass
class _Loop:
  """The training loop; its edges (checks, saves, evaluations, summaries) are methods."""

  it: Any
  train_step: Callable[..., Any]
  rng: jax.Array
  mesh: Any
  ckpts: checkpoints_lib.Checkpoints
  guard: trainer_lib.NanGuard
  progress: progress_lib.Progress
  signals: preemption.PreemptionHandler
  summaries: summaries_lib.Summaries
  model_dir: str
  timing: dict[str, float]  # setup's timing/* scalars, written with the first batch's
  infer_eval: Any = None  # a `periodic.PeriodicEvaluator` (EVAL_PERIOD) or None
  eval_period: int | None = None

  def run(self, state: Any, start: int, end: int) -> tuple[Any, bool]:
    """Trains from step `start` to `end`; returns (the state, whether a signal stopped it)."""
    pending = None  # the previous step's metrics, checked one step late (no pipeline stall)
    for step in range(start + 1, end + 1):
      batch = self._next_batch(first=step == start + 1, start=start)
      state, metrics = self.train_step(state, batch, self.rng)
      if pending is not None:
        self.guard.check(pending, step - 1)
      pending = metrics
      self.progress.update(step, metrics)
      if step == start + 1:
        self._write_operative_config(step)
      preempted = self.signals.requested()
      if preempted or self.ckpts.should_save(step) or step == end:
        self._save(state, metrics, step)
      if preempted:
        logging.warning("Preempted: saved %s/checkpoint_%d; exiting.", self.model_dir, step)
        return state, True
      if self.infer_eval is not None and step % self.eval_period == 0:
        self._evaluate(state, step)
    return state, False

  def _next_batch(self, *, first: bool, start: int) -> dict[str, jax.Array]:
    tick = time.perf_counter()
    batch = partitioning.shard_batch(next(self.it), self.mesh)
    if first:  # t5x's name for the wait for the first batch
      self.timing["timing/train_iter_warmup"] = time.perf_counter() - tick
      self.summaries.scalars(summaries_lib.TRAIN, start, self.timing)
    return batch

  def _write_operative_config(self, step: int) -> None:
    if jax.process_index() == 0:
      operative = gin.operative_config_str()
      (paths.path(self.model_dir) / "operative_config.gin").write_text(operative)
      self.summaries.texts(summaries_lib.TRAIN, step, {"operative_config": gin.markdown(operative)})

  def _save(self, state: Any, metrics: Any, step: int) -> None:
    """Saves `step` with every host's input position (a collective), if it is finite."""
    self.guard.check(metrics, step)
    self.guard.check_state(state, step)
    tick = time.perf_counter()
    self.ckpts.save(step, state, checkpoints_lib.gather_dataset_states(self.it.state()))
    seconds = time.perf_counter() - tick
    self.summaries.scalars(summaries_lib.TRAIN, step, {"timing/checkpoint_seconds": seconds})

  def _evaluate(self, state: Any, step: int) -> None:
    logging.info("Evaluating the held-out cluster's subset at step %d.", step)
    tick = time.perf_counter()
    results = self.infer_eval.evaluate(state.params, step)
    self.summaries.eval_results(summaries_lib.INFERENCE_EVAL, step, results)
    seconds = time.perf_counter() - tick
    self.summaries.scalars(summaries_lib.TRAIN, step, {"timing/evaluate_seconds": seconds})
    self.progress.exclude(seconds)


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
  cluster = _heldout_cluster(data, evaluation)
  eval_period = evaluation.eval_period
  if eval_period and not cluster:
    logging.warning(
      "EVAL_PERIOD=%d but there is no held-out cluster to evaluate (set HELDOUT_CLUSTER); "
      "no evaluation during training.",
      eval_period,
    )
    eval_period = None
  # The optimizer checks its settings (LEARNING_RATE, ...) before anything is written.
  optimizer = make_optimizer(param_axes=model.param_logical_specs())
  model_dir = run.model_dir
  _check_writable(model_dir)
  config_gin = gin.config_str()  # as parsed; written once the run is validated and locked
  mesh = partitioning.make_mesh(run.mesh)
  partitioning.check_batch_size(data.batch_size, mesh)
  vocab, vocab_record = _vocabulary(data, model)
  guard = trainer_lib.NanGuard(run.nan_policy, run.max_consecutive_skips)
  init_rng, step_rng = jax.random.split(jax.random.PRNGKey(run.random_seed))
  hparams = _hparams(
    model, make_optimizer, cluster, eval_period, mesh, data=data, run=run, checkpoint=checkpoint
  )

  with contextlib.ExitStack() as stack:
    lock = stack.enter_context(run_lock.hold(model_dir))  # one trainer per MODEL_DIR (None: gs://)
    signals = stack.enter_context(
      preemption.PreemptionHandler(run.preemption_grace_seconds, on_abort=lock and lock.release)
    )
    summaries = summaries_lib.Summaries(model_dir)
    stack.callback(summaries.close)
    it, shapes, seconds = _open_data(stack, data, run, vocab, mesh, make_iterator)
    timing = {"timing/dataset_loading_seconds": seconds}
    tick = time.perf_counter()
    ckpts = checkpoints_lib.Checkpoints(
      model_dir, period=checkpoint.checkpoint_period, keep=checkpoint.keep_checkpoints
    )
    stack.callback(ckpts.close)
    if ckpts.steps():  # resuming: the vocabulary must be the one the checkpoints learnt
      run_record.check_vocabulary(model_dir, vocab_record)
    state, shardings, source = _restore_or_initialize(
      model,
      optimizer,
      mesh,
      init_rng,
      shapes,
      ckpts,
      it,
      fsdp=run.fsdp,
      initial_checkpoint_path=checkpoint.initial_checkpoint_path,
    )
    start = int(state.step)
    logging.info("Train state %s (step %d of %d).", source, start, run.train_steps)
    timing["timing/init_or_restore_seconds"] = time.perf_counter() - tick
    if jax.process_index() == 0:  # validated, locked, restored: now this run owns MODEL_DIR
      run_record.write(
        model_dir,
        model_config=model.config,
        feature_lengths=data.task_feature_lengths,
        vocabulary=vocab_record,
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
    summaries.texts(summaries_lib.TRAIN, start, {"config": gin.markdown(config_gin)})
    train_step = trainer_lib.make_train_step(
      model,
      optimizer,
      mesh=mesh,
      shardings=shardings,
      schedule=getattr(optimizer, "learning_rate_schedule", None),
      num_microbatches=run.num_microbatches,
      nan_policy=run.nan_policy,
    )
    timing["timing/compilation_seconds"] = _compile(train_step, state, shapes, mesh, step_rng)
    infer_eval = None
    if eval_period:
      infer_eval = _periodic_evaluator(
        model,
        mesh,
        cluster=cluster,
        vocabulary=vocab,
        data=data,
        evaluation=evaluation,
        checkpoint=checkpoint,
      )
    lengths = data.task_feature_lengths
    progress = progress_lib.Progress(
      total_steps=run.train_steps,
      start_step=start,
      log_every=run.log_every,
      writer=summaries.writer(summaries_lib.TRAIN),
      flops_per_step=flops.train_step_flops(
        model.config,
        batch_size=data.batch_size,
        input_length=lengths["inputs"],
        target_length=lengths["targets"],
      ),
      peak_flops=flops.peak_flops_per_device(jax.devices()[0]),
      data_stats=lambda: it.stats,
    )
    stack.callback(progress.close)
    loop = _Loop(
      it=it,
      train_step=train_step,
      rng=step_rng,
      mesh=mesh,
      ckpts=ckpts,
      guard=guard,
      progress=progress,
      signals=signals,
      summaries=summaries,
      model_dir=model_dir,
      timing=timing,
      infer_eval=infer_eval,
      eval_period=eval_period,
    )
    state, preempted = loop.run(state, start, run.train_steps)

    ckpts.wait()
    preempted = preempted or signals.requested()  # a signal during the last save: no eval
    step = int(state.step)
    logging.info("Checkpoints written to %s (newest: step %d).", model_dir, step)
    results = None
    if cluster and evaluation.run_heldout_eval and not preempted:
      signals.phase, signals.saved = preemption.EVALUATION, f"{model_dir}/checkpoint_{step}"
      try:
        results = _evaluate(
          model,
          state.params,
          mesh,
          cluster=cluster,
          vocabulary=vocab,
          data=data,
          evaluation=evaluation,
          model_dir=model_dir,
          step=step,
          initial_checkpoint_path=checkpoint.initial_checkpoint_path,
          runner=infer_eval.runner if infer_eval is not None else None,
        )
      except preemption.EvaluationInterrupted:
        preempted = True
      finally:
        signals.phase = preemption.FINISHING
      if results is not None:
        summaries.eval_results(summaries_lib.FINAL_EVAL, step, results["models"])
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
  logs.setup()  # our log format; library noise off unless FLAN_VERBOSE_LIBS=1
  with report_user_errors():
    logging.info("Reading the gin config (and loading seqio and TensorFlow).")
    run = configurable_train()
    parse_gin_flags(
      argv,
      prog="python -m flan.train",
      doc=__doc__,
      run_config="configs/runs/finetune.gin",
      entry=run,
    )
    run()
    return 0
  return 1


if __name__ == "__main__":
  import sys

  sys.exit(main())
