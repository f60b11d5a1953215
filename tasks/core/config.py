"""The experiment's one typed configuration.

`params.yaml` (one section per stage) plus `--set KEY=VALUE` overrides are validated once into a
frozen `Config`; each task is handed only its own section. Every bad value stops the run here,
before any download, training or MLflow write, with the key, the value and what would be accepted.
"""

import copy
import difflib
import gzip
import math
import struct
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from tasks.core.names import (
    ACTIVATIONS,
    DEFAULT_BASELINE,
    INITS,
    LEAKY_SLOPE,
    MODELS,
    OPTIMIZERS,
    SCHEDULES,
)
from tasks.core.paths import IDX_FILES
from tasks.core.uris import redact_uri

DATASETS = ("mnist", "fashion_mnist")  # sources downloaded from public mirrors
GENERATED = ("xor",)  # sources made on the spot (tasks.data.xor.xor_cloud)
# Training-file size of the named sources (downloaded or generated), to check sizes before
# downloading or generating anything.
KNOWN_TRAIN_SIZE = {"mnist": 60_000, "fashion_mnist": 60_000, "xor": 60_000}


class ConfigError(ValueError):
    """A params file, an override or a value that cannot be run. The message is for the user."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Section):
    source: str = "mnist"
    dir: Path = Path("data")
    mirrors: tuple[str, ...] | None = None
    timeout_seconds: float = Field(30.0, gt=0, allow_inf_nan=False)
    retries: int = Field(2, ge=0, le=10)

    @field_validator("source")
    @classmethod
    def _known_or_folder(cls, v: str) -> str:
        if v in DATASETS + GENERATED:
            return v
        folder = Path(v).expanduser()
        if not folder.is_dir():
            raise ValueError(
                f"{v!r} is neither a dataset name ({', '.join(DATASETS + GENERATED)}) nor an "
                "existing folder holding the four MNIST-format IDX files "
                f"({', '.join(IDX_FILES.values())})"
            )
        missing = [name for name in IDX_FILES.values() if not (folder / name).is_file()]
        if missing:
            raise ValueError(f"folder {v!r} lacks {', '.join(missing)}")
        return str(folder.resolve())

    @field_validator("mirrors")
    @classmethod
    def _https_mirrors(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("give at least one mirror URL, or null for the built-in mirrors")
        for url in v:
            parts = urlsplit(url)
            loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
            if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
                raise ValueError(
                    f"mirror {url!r} is not https:// (plain http:// is accepted on loopback only)"
                )
        return tuple(u if u.endswith("/") else u + "/" for u in v)


class PreprocessConfig(_Section):
    val_size: int = Field(5_000, ge=1)
    standardize: bool = False


class TutorialModelConfig(_Section):
    """The tutorial's network: activation(x·W + b), W zero-initialised unless `init` says other."""

    init: Literal[INITS] = "zeros"  # type: ignore[valid-type]


class MlpModelConfig(_Section):
    hidden_units: tuple[int, ...] = Field((128,), min_length=1)
    init: Literal[INITS] = "auto"  # type: ignore[valid-type]

    @field_validator("hidden_units")
    @classmethod
    def _positive(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        bad = [u for u in v if u < 1]
        if bad:
            raise ValueError(f"every layer needs at least 1 unit, got {list(v)}")
        return v


class ModelsConfig(_Section):
    tutorial: TutorialModelConfig = TutorialModelConfig()
    mlp: MlpModelConfig = MlpModelConfig()
    leaky_relu_slope: float = Field(LEAKY_SLOPE, gt=0, lt=1, allow_inf_nan=False)


class TrainConfig(_Section):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(100, ge=1)
    learning_rate: float = Field(0.1, gt=0, allow_inf_nan=False)
    lr_decay: float = Field(0.05, ge=0, lt=1, allow_inf_nan=False)
    schedule: Literal[SCHEDULES] = "epoch_decay"  # type: ignore[valid-type]
    optimizer: Literal[OPTIMIZERS] = "sgd"  # type: ignore[valid-type]
    momentum: float = Field(0.9, ge=0, lt=1, allow_inf_nan=False)
    # Per-hidden-layer diagnostics after each epoch (tasks/training/diagnostics.py), on the first
    # `probe_size` validation images (all of them when there are fewer); off changes no weight.
    diagnostics: bool = True
    probe_size: int = Field(1000, ge=1, le=100_000)
    # Networks that differ only in their activation (same model, depth, rate and seed: the same
    # batches) trained together in one compiled program per epoch, each with the results it
    # would have alone (tasks/training/stack.py); false trains them one after another.
    stack: bool = True


def _unique(v: tuple, what: str) -> tuple:
    if not v:
        raise ValueError(f"list at least one {what}")
    dupes = sorted({str(x) for x in v if v.count(x) > 1})
    if dupes:
        raise ValueError(f"{what} listed more than once: {', '.join(dupes)}")
    return v


class SeedsConfig(_Section):
    """`sweep.seeds` as a mapping: start with `start`, then add one seed at a time to a (model,
    depth) while its best activation and the runner-up cannot be told apart, up to `max` seeds."""

    start: tuple[int, ...] = (0,)
    until_separated: bool = True
    max: int = Field(5, ge=1, le=100)

    @field_validator("start")
    @classmethod
    def _start(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        return _seed_values(v)


def _seed_values(v: tuple[int, ...]) -> tuple[int, ...]:
    bad = [s for s in v if not 0 <= s < 2**31]
    if bad:
        raise ValueError(f"seeds must be whole numbers in [0, 2^31), got {bad}")
    return _unique(v, "seed")


def _seeds_form(v: Any) -> str:
    return "seed-mapping" if isinstance(v, dict | SeedsConfig) else "seed-list"


# The two forms of sweep.seeds, told apart by their type so that an error names one form only.
SEED_FORMS = ("seed-list", "seed-mapping")
Seeds = Annotated[
    Annotated[tuple[int, ...], Tag(SEED_FORMS[0])] | Annotated[SeedsConfig, Tag(SEED_FORMS[1])],
    Discriminator(_seeds_form),
]


class SweepConfig(_Section):
    models: tuple[Literal[MODELS], ...] = MODELS  # type: ignore[valid-type]
    activations: tuple[str, ...] = (
        "softmax", "sigmoid", "tanh", "relu", "leaky_relu",
        "elu", "selu", "softplus", "swish", "gelu",
    )  # fmt: skip
    # A list: exactly these seeds. A mapping (SeedsConfig): more seeds while it is close.
    seeds: Seeds = SeedsConfig(start=(0,), until_separated=True, max=3)
    # The initial learning rates to try, each activation keeping the one with the best mean
    # validation accuracy; None: train.learning_rate alone (and child run names say no `lr=`).
    learning_rates: tuple[float, ...] | None = None
    # Numbers of hidden layers of the mlp, each of models.mlp.hidden_units' one width; None: the
    # hidden layers exactly as models.mlp.hidden_units lists them (and names say no `depth=`).
    depths: tuple[int, ...] | None = None
    # What every other activation is compared with, seed by seed. It need not be swept: without
    # it the report says there is no paired comparison.
    baseline: str = DEFAULT_BASELINE

    @field_validator("baseline")
    @classmethod
    def _known_baseline(cls, v: str) -> str:
        if v not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation{_did_you_mean(v, ACTIVATIONS)}; accepted: any of "
                f"{', '.join(ACTIVATIONS)} (compared only if it is in sweep.activations)"
            )
        return v

    @field_validator("models")
    @classmethod
    def _models(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _unique(v, "model")

    @field_validator("activations")
    @classmethod
    def _activations(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for name in v:
            if name not in ACTIVATIONS:
                raise ValueError(
                    f"unknown activation {name!r}{_did_you_mean(name, ACTIVATIONS)}; "
                    f"accepted: {', '.join(ACTIVATIONS)}"
                )
        return _unique(v, "activation")

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds_given(cls, v: Any) -> Any:
        if v is None or isinstance(v, str | int | float | bool):
            raise ValueError(
                "expected a list of seeds, e.g. [0, 1, 2], or a mapping such as "
                "{until_separated: true, max: 5} (keys: start, until_separated, max)"
            )
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: tuple[int, ...] | SeedsConfig) -> tuple[int, ...] | SeedsConfig:
        if not isinstance(v, SeedsConfig):
            return _seed_values(v)
        if v.max < len(v.start):
            raise ValueError(
                f"max = {v.max} is fewer than the {len(v.start)} seeds of start = "
                f"{list(v.start)}; raise max or list fewer seeds"
            )
        return v

    @field_validator("learning_rates")
    @classmethod
    def _rates(cls, v: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if v is None:
            return v
        bad = [r for r in v if not (math.isfinite(r) and r > 0)]
        if bad:
            raise ValueError(f"every learning rate must be a finite number > 0, got {bad}")
        return _unique(v, "learning rate")

    @field_validator("depths")
    @classmethod
    def _depths(cls, v: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if v is None:
            return v
        bad = [d for d in v if not 1 <= d <= 64]
        if bad:
            raise ValueError(f"a depth is a number of hidden layers from 1 to 64, got {bad}")
        return _unique(v, "depth")

    @property
    def first_seeds(self) -> tuple[int, ...]:
        """The seeds every cell is trained with before any is added."""
        return self.seeds.start if isinstance(self.seeds, SeedsConfig) else self.seeds

    @property
    def until_separated(self) -> bool:
        return isinstance(self.seeds, SeedsConfig) and self.seeds.until_separated

    @property
    def max_seeds(self) -> int:
        """The most seeds any (model, depth, activation) is trained with."""
        if self.until_separated:
            return self.seeds.max  # type: ignore[union-attr]
        return len(self.first_seeds)

    def cell(
        self, model: str, activation: str, seed: int, learning_rate: float, depth: int | None
    ) -> "Cell":
        """The grid cell of these values, naming the learning rate and depth only when swept."""
        return Cell(
            model=model,
            activation=activation,
            seed=seed,
            learning_rate=learning_rate if self.learning_rates is not None else None,
            depth=depth if self.depths is not None and model == "mlp" else None,
        )


class TrackingConfig(_Section):
    uri: str | None = None
    experiment: str = Field("activation-lab", min_length=1)
    log_models: bool = False

    @field_serializer("uri", when_used="json")
    def _without_password(self, uri: str | None) -> str | None:
        """What gets recorded (Prefect's flow-run parameters, MLflow's config.json and params)
        is the JSON form: a password in the URI never reaches it."""
        return redact_uri(uri) if uri else uri


class ReportConfig(_Section):
    dir: Path = Path("reports")


class RunnerConfig(_Section):
    """Where the training tasks run (tasks/commands/runner.py)."""

    kind: Literal["threads", "dask"] = "threads"
    address: str | None = None
    workers: int = Field(1, ge=1, le=64)

    @field_validator("address")
    @classmethod
    def _scheduler_address(cls, v: str | None) -> str | None:
        if v is not None and "://" not in v:
            raise ValueError("expected a Dask scheduler address such as tcp://10.0.0.5:8786")
        return v


class Cell(BaseModel):
    """One point of the grid: one child MLflow run.

    `learning_rate` and `depth` are None unless swept (`sweep.learning_rates`, `sweep.depths`):
    then train.learning_rate and models.mlp.hidden_units apply as configured. `train_config` and
    `models_config` give the settings this cell actually trains with.
    """

    model_config = ConfigDict(frozen=True)
    model: str
    activation: str
    seed: int
    learning_rate: float | None = None
    depth: int | None = None  # hidden layers of the mlp, each of models.mlp.hidden_units' width

    @property
    def name(self) -> str:
        """e.g. `mlp/relu/seed=0`, or `mlp/relu/depth=6/lr=0.1/seed=0` when both are swept."""
        parts = [self.model, self.activation]
        if self.depth is not None:
            parts.append(f"depth={self.depth}")
        if self.learning_rate is not None:
            parts.append(f"lr={self.learning_rate:g}")
        return "/".join([*parts, f"seed={self.seed}"])

    def train_config(self, train: TrainConfig) -> TrainConfig:
        if self.learning_rate is None:
            return train
        return train.model_copy(update={"learning_rate": self.learning_rate})

    def models_config(self, models: ModelsConfig) -> ModelsConfig:
        if self.depth is None or self.model != "mlp":
            return models
        width = models.mlp.hidden_units[0]
        mlp = models.mlp.model_copy(update={"hidden_units": (width,) * self.depth})
        return models.model_copy(update={"mlp": mlp})


class Config(_Section):
    data: DataConfig = DataConfig()
    preprocess: PreprocessConfig = PreprocessConfig()
    models: ModelsConfig = ModelsConfig()
    train: TrainConfig = TrainConfig()
    sweep: SweepConfig = SweepConfig()
    tracking: TrackingConfig = TrackingConfig()
    report: ReportConfig = ReportConfig()
    runner: RunnerConfig = RunnerConfig()

    @model_validator(mode="after")
    def _fits_together(self) -> "Config":
        for name in self.sweep.activations:
            act = ACTIVATIONS[name]
            if not act.hidden_ok and "tutorial" not in self.sweep.models:
                raise ValueError(
                    f"sweep.activations: {name!r} is only valid as the tutorial model's output "
                    f"activation, and sweep.models = {list(self.sweep.models)} has no 'tutorial'; "
                    f"add 'tutorial' to sweep.models or drop {name!r}"
                )
        if self.runner.address is not None and self.runner.kind != "dask":
            raise ValueError(
                f"runner.address = {self.runner.address!r} is only used with runner.kind: "
                f"dask (runner.kind = {self.runner.kind!r}); set runner.kind: dask or "
                "runner.address: null"
            )
        if self.sweep.depths is not None:
            if "mlp" not in self.sweep.models:
                raise ValueError(
                    f"sweep.depths = {list(self.sweep.depths)} sets the mlp model's hidden layers, "
                    f"and sweep.models = {list(self.sweep.models)} has no 'mlp'; add 'mlp' or "
                    "set sweep.depths: null"
                )
            units = self.models.mlp.hidden_units
            if len(set(units)) > 1:
                raise ValueError(
                    f"sweep.depths = {list(self.sweep.depths)} repeats one width, and "
                    f"models.mlp.hidden_units = {list(units)} has several; give one width, e.g. "
                    f"[{units[0]}], or set sweep.depths: null"
                )
        n_train = _train_size(self.data.source)
        val = self.preprocess.val_size
        if n_train is not None:
            if val >= n_train:
                raise ValueError(
                    f"preprocess.val_size = {val}: must be smaller than the {n_train} images "
                    f"of the training file of data.source = {self.data.source!r}"
                )
            if self.train.batch_size > n_train - val:
                raise ValueError(
                    f"train.batch_size = {self.train.batch_size}: larger than the "
                    f"{n_train - val} training images left after preprocess.val_size = {val}"
                )
        return self

    @property
    def grid(self) -> list[Cell]:
        """Every (model, depth, activation, learning rate, seed) to train first; softmax only as
        the tutorial's output. `sweep.seeds: {until_separated: true}` may add seeds later."""
        sweep = self.sweep
        rates = sweep.learning_rates or (self.train.learning_rate,)
        return [
            sweep.cell(m, a, s, rate, depth)
            for m in sweep.models
            for depth in (sweep.depths if sweep.depths and m == "mlp" else (None,))
            for a in sweep.activations
            if m == "tutorial" or ACTIVATIONS[a].hidden_ok
            for rate in rates
            for s in sweep.first_seeds
        ]


def _train_size(source: str) -> int | None:
    """Images in the training file, read from the IDX header (8 bytes) for a local folder."""
    if source in KNOWN_TRAIN_SIZE:
        return KNOWN_TRAIN_SIZE[source]
    try:
        with gzip.open(Path(source) / IDX_FILES["train_labels"], "rb") as f:
            magic, count = struct.unpack(">II", f.read(8))
    except (OSError, EOFError, struct.error):
        return None  # the data stage reports the broken file with its own message
    return count if magic == 2049 else None


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _section_at(loc: tuple) -> type[BaseModel] | None:
    """The pydantic model that holds the key at `loc`, to list its keys for an unknown one."""
    model: type[BaseModel] | None = Config
    for part in loc[:-1]:
        if part == SEED_FORMS[1]:  # the mapping form of sweep.seeds
            model = SeedsConfig
            continue
        field = model.model_fields.get(part) if model and isinstance(part, str) else None
        ann = field.annotation if field else None
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return model


def _dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _describe(err: dict) -> str:
    loc = tuple(p for p in err["loc"] if p not in ("function-after", *SEED_FORMS))
    key = _dotted(loc)
    if err["type"] == "extra_forbidden":
        section = _section_at(err["loc"])
        fields = list(section.model_fields) if section else []
        where = _dotted(loc[:-1]) or "the top level"
        hint = _did_you_mean(str(loc[-1]), fields)
        return f"{key}: unknown key{hint}; keys accepted in {where}: {', '.join(fields)}"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "value_error" and not loc:  # cross-field checks name their own keys
        return msg
    return f"{key} = {err.get('input')!r}: {msg}"


def validate_config(data: Any, origin: str = "params") -> Config:
    """Validate a nested mapping into a Config or raise ConfigError listing every problem."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{origin}: expected a mapping of sections (data, preprocess, models, train, sweep, "
            f"tracking, report, runner), got {type(data).__name__}"
        )
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        lines = "\n".join(f"  - {_describe(e)}" for e in exc.errors())
        raise ConfigError(f"invalid configuration ({origin}):\n{lines}") from None


def _tag_hint(exc: yaml.YAMLError) -> str:
    """Why a `!!python/...` tag is refused: params are data, never code to construct."""
    if isinstance(exc, yaml.constructor.ConstructorError):
        return (
            "; params are read with YAML's safe loader, which builds only plain values "
            "(numbers, strings, lists, mappings): remove the tag"
        )
    return ""


def read_params(path: Path) -> dict:
    """Read a params file with YAML's safe loader; missing, empty or broken is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file {str(path)!r} not found (pass one with -p FILE)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and start and mark and start.line != mark.line:
            problem += f" ({context} that starts at line {start.line + 1})"
        raise ConfigError(
            f"params file {str(path)!r} is not valid YAML{where}: {problem}{_tag_hint(exc)}"
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"params file {str(path)!r} is not UTF-8 text: {exc}") from None
    if data is None:
        raise ConfigError(f"params file {str(path)!r} is empty; expected sections such as train:")
    if not isinstance(data, dict):
        raise ConfigError(
            f"params file {str(path)!r} must be a mapping of sections (data:, train:, ...), "
            f"got a {type(data).__name__}"
        )
    return data


def apply_override(data: dict, assignment: str) -> dict:
    """Return a copy of `data` with one `dotted.key=yaml-value` override applied."""
    key, sep, raw = assignment.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(
            f"--set {assignment!r}: expected KEY=VALUE with a dotted key, e.g. train.epochs=3"
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            f"--set {assignment!r}: the value is not valid YAML: {problem}{_tag_hint(exc)}"
        ) from None
    out = copy.deepcopy(data)
    node = out
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(
                f"--set {assignment!r}: {'.'.join(parts[: i + 1])} is a value, not a section"
            )
        node = child
    node[parts[-1]] = value
    return out


def load_config(path: Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """params file (or the defaults when None) + overrides -> validated Config."""
    data = read_params(path) if path is not None else {}
    for assignment in overrides:
        data = apply_override(data, assignment)
    origin = str(path) if path is not None else "defaults"
    if overrides:
        origin += " with --set " + " ".join(overrides)
    return validate_config(data, origin)
