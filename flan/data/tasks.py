"""seqio tasks of the 62 FLAN datasets (and, through `flan.data.mixtures`, their mixtures).

Each task reads its examples with `flan.data.examples` (pure Python: TFDS -> preprocessor ->
template), then hands seqio the rendered strings; seqio only tokenizes and appends EOS.

Per dataset `d` (see `flan.data.datasets`):
  flan_<d>_train         split "train" (every source); each example gets template
                         `template_idx`, drawn uniformly among the first `num_templates` from
                         (seed, d, example_id). Split "validation": the dev split, rendered
                         the same way (t5x's train-eval).
  flan_<d>_<s>_train     datasets with several sources only: source `s`'s part of
                         flan_<d>_train (same example ids and templates), e.g.
                         flan_anli_r1_train. The mixtures hold these, one member per source
                         as FLAN's configs (`train_members`).
  flan_<d>_t<i>          splits "validation" (dev) and "test" (zero-shot eval), template i.
                         Generation templates carry `metric_fns` (decoded predictions).
  flan_<d>_t<i>_scoring  rank classification, classification templates only: one row per
                         option with `example_id`, `option_idx` and `is_correct` (int32 0/1;
                         a bool would break seqio caching under protobuf 7), scored with
                         `score_metric_fns` (t5's rank classification).
Features: `inputs`, `targets` (int32 tokens, EOS appended after trimming), their
`*_pretokenized` strings, and `template_idx` / `example_id` (int32); eval and scoring rows
also `metric_fields` (JSON: what the metrics read, see `flan.data.task_metrics`). A
template's evaluated task (`evaluated_task`: its scoring task, or its eval task for a
generation template) is what seqio's Evaluator scores on `flan_holdout_<c>_eval` and what
`flan.evaluation` reads: one route from the examples to the metrics.

`validation` is FLAN's small validation split, our dev split (`flan.data.datasets`: the
train tail, or the first 200 examples of the builder's validation split where FLAN reads
`validation[:200]`); every FLAN dataset has one. It is declared only where it has examples
in the data dir (a seqio mixture would stop at an empty member); a task without it has
`train` (train tasks) or `test` (eval tasks) only, seqio's Evaluator skips it on
`validation`, and the evaluation report scores such a dataset by its mean over templates.

Importing this module registers the default configuration. `register` re-registers
everything with other knobs; the trainer calls it with the run's data options (`DATA_DIR`,
`VOCABULARY` and the ablation knobs, `flan.training.options.DataOptions`).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import pathlib
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import seqio
import tensorflow as tf

from flan.data import clusters as clusters_lib
from flan.data import datasets as datasets_lib
from flan.data import examples, mixtures, task_metrics, vocabularies
from flan.data import templates as templates_lib
from flan.data.preprocessors import flan_compat
from flan.data.task_names import (  # noqa: F401 - the task names, re-exported
  PREFIX,
  eval_task,
  scoring_task,
  train_members,
  train_task,
)
from flan.errors import UserError

# The pure-Python example API, re-exported (see `flan.data.examples`).
load_examples = examples.load_examples
render_example = examples.render_example
template_indices = examples.template_indices
DataNotPreparedError = examples.DataNotPreparedError


@dataclasses.dataclass(frozen=True)
class Config:
  """The knobs the current registration was made with (see `register`)."""

  data_dir: str | None = None
  vocabulary: seqio.Vocabulary = dataclasses.field(default_factory=seqio.ByteVocabulary)
  num_templates: int = templates_lib.NUM_TEMPLATES
  template_mode: str = "instructions"
  mixing_cap: int = 3000
  temperature: float = 1.0
  train_clusters: tuple[str, ...] | None = None
  missing_datasets: str = "error"
  flan_templates_dir: str | None = None


_CONFIG: Config | None = None
_REGISTERED: set[str] = set()


def current_config() -> Config:
  """The configuration of the registered tasks."""
  assert _CONFIG is not None, "flan.data.tasks registers on import."
  return _CONFIG


def _strings(values: Sequence[str]) -> tf.Tensor:
  return tf.constant(list(values), dtype=tf.string, shape=[len(values)])


def _ints(values: Sequence[int]) -> tf.Tensor:
  return tf.constant(list(values), dtype=tf.int32, shape=[len(values)])


class FlanSource(seqio.FunctionDataSource):
  """Rendered examples of one dataset for one task kind ("train", "eval" or "scoring").

  `columns(split, seed, shard=...)` is the task content (of one data shard) as Python lists;
  `get_dataset` wraps it with `tf.data.Dataset.from_tensor_slices`. Sizes come from TFDS
  metadata, so mixing rates never read data.

  Sharding happens at the source (`supports_arbitrary_sharding`): with a `shard_info`, a
  host reads, decodes, preprocesses and renders only its contiguous share of the examples
  (`flan.data.examples.shard_reads`), where a `FunctionDataSource` would make every host
  read everything and keep every n-th example.
  """

  def __init__(
    self, dataset: str, kind: str, config: Config, template_idx: int = 0, source: str | None = None
  ):
    self.dataset = dataset
    self.kind = kind
    self.template_idx = template_idx
    self.config = config
    self.source = source  # one source's examples (a `Source.name`); None: all of them.
    splits = ("train", "validation") if kind == "train" else ("validation", "test")
    super().__init__(dataset_fn=self._dataset_fn, splits=splits)

  @property
  def splits(self) -> tuple[str, ...]:
    """`validation` (the dev split) is declared only where it has examples: a seqio mixture
    skips members without the split and would stop at an empty one, so t5x's train-eval
    (`dataset_split="validation"` on a train mixture) reads the members that have dev
    examples, and seqio's Evaluator skips the others' eval tasks on `validation` rather
    than scoring an empty split."""
    try:
      has_dev = self.num_input_examples("validation") > 0
    except examples.DataNotPreparedError:
      has_dev = False
    return self._splits if has_dev else tuple(s for s in self._splits if s != "validation")

  @property
  def supports_arbitrary_sharding(self) -> bool:
    return True

  def num_input_examples(self, split: str) -> int:
    """Examples of `split` before preprocessing, from the split sizes alone."""
    return examples.num_input_examples(self.dataset, split, self.config.data_dir, self.source)

  def get_dataset(
    self,
    split: str = "train",
    shuffle: bool = True,
    seed: int | None = None,
    shard_info: seqio.ShardInfo | None = None,
    *,
    sequence_length=None,
    use_cached: bool = False,
    num_epochs: int | None = 1,
  ) -> tf.data.Dataset:
    """The rendered examples of `split`, of data shard `shard_info` only (None: all)."""
    del sequence_length, use_cached, num_epochs  # unused, as FunctionDataSource's.
    shard = (shard_info.index, shard_info.num_shards) if shard_info else None
    return self._dataset_fn(split=split, shuffle_files=shuffle, seed=seed, shard=shard)

  def cache_key(self, split: str, seed: int | None) -> dict | None:
    """Everything the tokens of `split` depend on (`flan.data.token_cache`); None: no cache.

    Mocked TFDS data (random examples) is never cached.
    """
    d, cfg = self.dataset, self.config
    reads = examples.task_reads(d, split, cfg.data_dir, self.source)
    builders = {}
    for read, _, _, _ in reads:
      if examples.is_mocked(read.tfds_name, cfg.data_dir):
        return None
      builders[read.tfds_name] = str(examples.builder(read.tfds_name, cfg.data_dir).version)
    return {
      "dataset": d,
      "source": self.source,
      "kind": self.kind,
      "split": split,
      "template_idx": self.template_idx if self.kind != "train" else None,
      "seed": 0 if seed is None else int(seed),
      "builders": builders,
      "reads": [[r.tfds_name, r.tfds_split, first_id] for r, first_id, _, _ in reads],
      "vocabulary": vocabularies.ids_fingerprint(cfg.vocabulary),
      "templates": _digest(repr(self._templates())),
      "flan_compat": cfg.flan_templates_dir is not None,
      "preprocessors": examples.preprocessor_fingerprint(),
      "num_templates": cfg.num_templates,
      "template_mode": cfg.template_mode,
      "add_eos": True,
    }

  def _templates(self) -> tuple:
    """Every template this source can render with (the replication mode's, per FLAN config)."""
    flan_dir = self.config.flan_templates_dir
    if flan_dir is None:
      return examples.get_templates(self.dataset)
    return tuple(
      templates_lib.load_flan(t.pattern_key, flan_dir) for t in flan_compat.tasks_of(self.dataset)
    )

  def shard_id_bounds(self, split: str, shard: tuple[int, int]) -> tuple[int, int] | None:
    """`[first, last + 1)` example ids of data shard `shard` (None: it reads none)."""
    reads = examples.task_reads(self.dataset, split, self.config.data_dir, self.source, shard)
    if not reads:
      return None
    (_, first, lo, _), (_, last, _, hi) = reads[0], reads[-1]
    return first + lo, last + hi

  def columns(
    self,
    split: str,
    seed: int | None = None,
    limit: int | None = None,
    shard: tuple[int, int] | None = None,
  ) -> dict[str, list]:
    """The rendered rows of `split` (the first `limit` examples): feature -> values.

    `shard`: `(index, count)`, only that data shard's rows (see `examples.shard_reads`).
    """
    if split not in self.splits:
      raise UserError(
        f"Task kind {self.kind!r} of {self.dataset!r} has splits "
        f"{list(self.splits)}, not {split!r}."
      )
    d, cfg = self.dataset, self.config
    flan_dir = cfg.flan_templates_dir  # None, or the replication mode
    # Training reads each split once (the stream keeps the tokens): nothing cached here.
    rows = examples.load_examples(
      d,
      split,
      cfg.data_dir,
      self.source,
      shard,
      cache=self.kind != "train",
      flan_compat=flan_dir is not None,
    )[:limit]
    ids = [r["example_id"] for r in rows]
    if self.kind == "scoring":
      cols = {
        "inputs": [],
        "targets": [],
        "example_id": [],
        "option_idx": [],
        "is_correct": [],
        "template_idx": [],
        "metric_fields": [],
      }
      for row in rows:
        fields = task_metrics.metric_fields(row, ())
        for inputs, targets, option_idx, correct in examples.scoring_rows(
          d, row, self.template_idx, cfg.template_mode, flan_dir
        ):
          values = (inputs, targets, row["example_id"], option_idx, correct, self.template_idx)
          for key, value in zip(cols, (*values, fields)):
            cols[key].append(value)
      return cols
    if self.kind == "train":
      count = min(cfg.num_templates, len(examples.get_templates(d, flan_dir)))
      chosen = examples.template_indices(0 if seed is None else seed, d, ids, count).tolist()
    else:
      chosen = [self.template_idx] * len(rows)
    rendered = [
      examples.render_example(d, r, t, cfg.template_mode, flan_dir) for r, t in zip(rows, chosen)
    ]
    cols = {
      "inputs": [x for x, _ in rendered],
      "targets": [y for _, y in rendered],
      "template_idx": chosen,
      "example_id": ids,
    }
    if self.kind == "eval":
      template = examples.get_templates(d, flan_dir)[self.template_idx]
      cols["metric_fields"] = [
        task_metrics.metric_fields(r, task_metrics.references(r, template, y))
        for r, (_, y) in zip(rows, rendered)
      ]
    return cols

  def _dataset_fn(
    self,
    split: str,
    shuffle_files: bool,
    seed: int | None = None,
    shard: tuple[int, int] | None = None,
  ):
    cols = self.columns(split, seed, shard=shard)
    if shuffle_files:  # a full permutation, better than seqio's 1000-example buffer.
      order = np.random.default_rng(0 if seed is None else seed).permutation(len(cols["inputs"]))
      cols = {k: [v[i] for i in order] for k, v in cols.items()}
    return tf.data.Dataset.from_tensor_slices(
      {k: (_ints(v) if k in _INT_FEATURES else _strings(v)) for k, v in cols.items()}
    )


_INT_FEATURES = ("template_idx", "example_id", "option_idx", "is_correct")


def _digest(text: str) -> str:
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def _features(vocabulary: seqio.Vocabulary) -> dict[str, seqio.Feature]:
  return {
    "inputs": seqio.Feature(vocabulary, add_eos=True),
    "targets": seqio.Feature(vocabulary, add_eos=True),
  }


def _metrics(source: FlanSource) -> tuple[list, list]:
  """(metric_fns, score_metric_fns) of a task: a scoring task ranks its options, a
  generation template's eval task scores decoded text; others have none."""
  if source.kind == "train":
    return [], []
  spec = datasets_lib.get(source.dataset)
  kind = evaluated_kind(source.dataset, source.template_idx, source.config)
  names = task_metrics.metric_names(spec, kind)
  if source.kind == "scoring":
    return [], [task_metrics.rank_classification_metric(names)]
  if kind == task_metrics.RANK_CLASSIFICATION:
    return [], []  # scored by its scoring task
  return [task_metrics.generation_metric(names)], []


def make_task(name: str, source: FlanSource, vocabulary: seqio.Vocabulary) -> seqio.Task:
  """The seqio task `name` over `source` (registered by `register`, or built unregistered
  for `evaluated_task`): tokenize, cache point, EOS after trimming; its metrics."""
  metric_fns, score_metric_fns = _metrics(source)
  return seqio.Task(
    name,
    source=source,
    output_features=_features(vocabulary),
    preprocessors=[
      seqio.preprocessors.tokenize,
      seqio.CacheDatasetPlaceholder(),
      seqio.preprocessors.append_eos_after_trim,
    ],
    postprocess_fn=task_metrics.postprocess if source.kind != "train" else None,
    metric_fns=metric_fns + score_metric_fns,
  )


def _add_task(name: str, source: FlanSource, vocabulary: seqio.Vocabulary) -> None:
  seqio.TaskRegistry.add_provider(name, make_task(name, source, vocabulary))
  _REGISTERED.add(name)


def evaluated_kind(dataset: str, template_idx: int, config: Config | None = None) -> str:
  """`task_metrics.kind` of a template (rank classification, generation, turned around)."""
  flan_dir = (config or current_config()).flan_templates_dir
  templates = examples.get_templates(dataset, flan_dir)
  return task_metrics.kind(datasets_lib.get(dataset), templates, template_idx)


def evaluated_task_name(dataset: str, template_idx: int, config: Config | None = None) -> str:
  """The task that evaluates a template: its scoring task (rank classification) or its
  eval task (generation)."""
  if evaluated_kind(dataset, template_idx, config) == task_metrics.RANK_CLASSIFICATION:
    return scoring_task(dataset, template_idx)
  return eval_task(dataset, template_idx)


def evaluated_task(dataset: str, template_idx: int, config: Config) -> seqio.Task:
  """The evaluated task of a template under `config`, built as `register` builds it but
  not registered (evaluation may use another data_dir or vocabulary than the registry)."""
  name = evaluated_task_name(dataset, template_idx, config)
  kind = "scoring" if name.endswith("_scoring") else "eval"
  return make_task(name, FlanSource(dataset, kind, config, template_idx), config.vocabulary)


def tokenize(
  texts: Mapping[str, Sequence[str]],
  vocabulary: seqio.Vocabulary,
  sequence_length: Mapping[str, int],
) -> list[dict[str, np.ndarray]]:
  """Rendered strings through the tasks' own preprocessors (tokenize, EOS after trimming):
  for inputs no task yields, such as few-shot prompts."""
  features = {k: v for k, v in _features(vocabulary).items() if k in texts}
  ds = tf.data.Dataset.from_tensor_slices({k: _strings(v) for k, v in texts.items()})
  ds = seqio.preprocessors.tokenize(ds, features)
  ds = seqio.preprocessors.append_eos_after_trim(
    ds, output_features=features, sequence_length=dict(sequence_length)
  )
  return list(ds.as_numpy_iterator())


def _check_knobs(
  num_templates, template_mode, mixing_cap, temperature, train_clusters, missing_datasets
):
  if not 1 <= num_templates <= templates_lib.NUM_TEMPLATES:
    raise UserError(
      f"num_templates must be in 1..{templates_lib.NUM_TEMPLATES}, got {num_templates}."
    )
  if missing_datasets not in ("error", "skip"):
    raise UserError(f"missing_datasets must be 'error' or 'skip', got {missing_datasets!r}.")
  if template_mode not in templates_lib.MODES:
    raise UserError(
      f"Unknown template_mode {template_mode!r}; choose one of {', '.join(templates_lib.MODES)}."
    )
  if mixing_cap is not None and mixing_cap <= 0:
    raise UserError(f"mixing_cap must be positive (or None: uncapped), got {mixing_cap}.")
  if temperature <= 0:
    raise UserError(f"temperature must be positive, got {temperature}.")
  if train_clusters is not None:
    if isinstance(train_clusters, str):
      train_clusters = train_clusters.split(",")
    train_clusters = tuple(clusters_lib.check_cluster(c.strip()) for c in train_clusters)
  return train_clusters


def register(
  *,
  data_dir: str | None = None,
  vocabulary: seqio.Vocabulary | str | None = None,
  num_templates: int = templates_lib.NUM_TEMPLATES,
  template_mode: str = "instructions",
  mixing_cap: int | None = 3000,
  temperature: float = 1.0,
  train_clusters: Iterable[str] | None = None,
  missing_datasets: str = "error",
  flan_templates_dir: str | None = None,
) -> Config:
  """(Re-)registers every FLAN task and mixture with these knobs.

  Args:
    data_dir: TFDS data_dir (the `DATA_DIR` gin macro; None: TFDS's default).
    vocabulary: a `seqio.Vocabulary`, a SentencePiece model path, or None / "byte".
    num_templates: training draws among the first this many templates (paper ablation).
    template_mode: "instructions", "no_template" or "dataset_name" (see flan.data.templates).
    mixing_cap: examples-proportional cap on each training task's rate.
    temperature: rates are min(n, cap) ** (1 / temperature).
    train_clusters: restrict training mixtures to these clusters (number-of-clusters
      ablation); the hold-out rules still apply.
    missing_datasets: "error" (default): a mixture member whose TFDS data is not prepared in
      `data_dir` fails when the mixture is read, naming the builder and how to prepare it;
      "skip": mixtures leave such datasets out, with a warning listing them (for partial
      data such as ../shared's samples; never silently).
    flan_templates_dir: the exact-replication mode. None (default): our templates and
      preprocessing. A directory written by `scripts/import_flan_templates.py` from FLAN's
      own `templates.py`: every example goes through FLAN's preprocessing of its task config
      (`flan.data.preprocessors.flan_compat`) and is rendered with FLAN's templates, so
      `(inputs, targets)` equal FLAN's rendering byte for byte.

  Returns:
    The configuration now registered.

  Raises:
    flan.data.templates.TemplateError: a template file does not fit its dataset (the message
      names the file, the template index and the field).
  """
  global _CONFIG
  train_clusters = _check_knobs(
    num_templates, template_mode, mixing_cap, temperature, train_clusters, missing_datasets
  )
  if not isinstance(vocabulary, seqio.Vocabulary):
    vocabulary = vocabularies.get_vocabulary(vocabulary)
  if flan_templates_dir is not None:
    flan_templates_dir = str(pathlib.Path(flan_templates_dir).resolve())
    for spec in datasets_lib.DATASETS:  # fail now, naming the file, not when data is read.
      for flan_task in flan_compat.tasks_of(spec.name):
        templates_lib.load_flan(flan_task.pattern_key, flan_templates_dir)
  config = Config(
    data_dir,
    vocabulary,
    num_templates,
    template_mode,
    mixing_cap,
    temperature,
    train_clusters,
    missing_datasets,
    flan_templates_dir,
  )
  all_templates = {
    d.name: examples.get_templates(d.name, flan_templates_dir) for d in datasets_lib.DATASETS
  }
  for name in sorted(_REGISTERED):
    seqio.MixtureRegistry.remove(name)
    seqio.TaskRegistry.remove(name)
  _REGISTERED.clear()
  for spec in datasets_lib.DATASETS:
    d = spec.name
    _add_task(train_task(d), FlanSource(d, "train", config), vocabulary)
    for task, source in train_members(d):
      if source:
        _add_task(task, FlanSource(d, "train", config, source=source), vocabulary)
    for i, template in enumerate(all_templates[d]):
      _add_task(eval_task(d, i), FlanSource(d, "eval", config, i), vocabulary)
      if spec.classification and template.is_classification:
        _add_task(scoring_task(d, i), FlanSource(d, "scoring", config, i), vocabulary)
  _REGISTERED.update(mixtures.register(config))
  _CONFIG = config
  return config


def registered_names() -> list[str]:
  """Names of every FLAN task and mixture currently registered."""
  return sorted(_REGISTERED)


def get(name: str) -> seqio.Task | seqio.Mixture:
  """The registered seqio task or mixture `name` (FLAN's or a user's); an unknown name lists
  the close matches."""
  known = set(seqio.TaskRegistry.names()) | set(seqio.MixtureRegistry.names())
  if name in known:
    return seqio.get_mixture_or_task(name)
  close = difflib.get_close_matches(name, sorted(known), n=6, cutoff=0.6)
  hint = f" Did you mean: {', '.join(close)}?" if close else ""
  raise UserError(
    f"Unknown seqio task or mixture {name!r}.{hint} FLAN's tasks are "
    "flan_<dataset>[_<source>]_train, flan_<dataset>_t<i>[_scoring]; mixtures "
    "flan_holdout_<cluster>_train/_eval and flan_all_train (see `python -m flan.show --list`); "
    "your own are registered by the modules in MIXTURE_OR_TASK_MODULE."
  )


def check_prepared(name: str) -> None:
  """Raises one `DataNotPreparedError` naming every dataset of `name` not prepared.

  A mixture reads many builders; naming them one failure at a time would take a run per
  missing builder. With one missing, its own detailed message (manual download, splits).
  """
  task_or_mixture = get(name)
  members = getattr(task_or_mixture, "tasks", None) or [task_or_mixture]
  datasets = sorted({t.source.dataset for t in members if isinstance(t.source, FlanSource)})
  data_dir = current_config().data_dir
  missing = [d for d in datasets if not mixtures.prepared(d, data_dir)]
  if len(missing) == 1:
    examples.resolved_splits(missing[0], data_dir)  # raises its detailed message
  if missing:
    raise DataNotPreparedError(examples.not_prepared_many_message(missing, data_dir, name))


register()
