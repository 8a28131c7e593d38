"""Where a run's numbers go: ``results.csv`` always, TensorBoard by default, Weights & Biases
and MLflow when asked for (``train.loggers``) and installed.

Every logger is a :class:`~yolov3.train.hooks.Hook` that receives the same scalars, named as
TensorBoard shows them: ``loss/PART`` (per image: ``xy``, ``wh``, ``obj``, ``cls`` or ``box``,
and ``total``), ``lr``, ``images_per_second``, and after an evaluation ``val/AP`` and
``val/AP50``. A logger writes every ``every`` iterations (TensorBoard: each; the others:
``train.log_interval``), at the first and at each evaluation. Loggers run on rank 0.
"""

from __future__ import annotations

import csv
import hashlib
import importlib
import importlib.util
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yolov3.fileio import atomic_write
from yolov3.train.hooks import Hook, StepInfo

if TYPE_CHECKING:
    from yolov3.train.trainer import Trainer

#: ``train.loggers`` values and the package each needs (None: always installed).
LOGGERS = {"tensorboard": None, "wandb": "wandb", "mlflow": "mlflow"}


def check_loggers(names: list[str]) -> list[str]:
    """The problems of ``train.loggers``: unknown names, and loggers whose package is not
    installed (with the command that installs it)."""
    problems = []
    for name in names:
        if name not in LOGGERS:
            problems.append(f"train.loggers: unknown logger '{name}' (known: "
                            f"{', '.join(LOGGERS)}; results.csv is always written)")
        elif (package := LOGGERS[name]) and importlib.util.find_spec(package) is None:
            problems.append(f"train.loggers: {name} is not installed: pip install {package} "
                            f"(or 'yolov3-darknet[{name}]')")
    return problems


class ScalarLogger(Hook):
    """Collects the scalars of the module docstring and hands them to :meth:`write`."""

    def __init__(self, every: int = 1) -> None:
        self.every = every
        self.val: tuple[int, dict[str, float]] | None = None

    def after_evaluation(self, trainer: Trainer, iteration: int,
                         metrics: dict[str, float]) -> None:
        self.val = iteration, {f"val/{k}": v for k, v in metrics.items()}

    def after_step(self, trainer: Trainer, step: StepInfo) -> None:
        values: dict[str, float] = {}
        if step.finite and (step.iteration % self.every == 0 or step.iteration == 1):
            values = {f"loss/{k}": v for k, v in step.per_image(trainer.step.parts).items()}
            values |= {"lr": step.stats["lr"], "images_per_second": step.rate}
        if self.val is not None and self.val[0] == step.iteration:
            values |= self.val[1]
        if values:
            self.write(step.iteration, values)

    def write(self, iteration: int, values: dict[str, float]) -> None:
        """Record ``values`` of ``iteration``."""
        raise NotImplementedError


class CsvLog(ScalarLogger):
    """``results.csv``: a row per logged iteration, a column per scalar (``iteration`` first),
    empty where a row has no value (``val/AP`` outside evaluations). A resumed run drops the
    rows past its checkpoint, so that the file follows the run that continues."""

    def __init__(self, path: Path, every: int) -> None:
        super().__init__(every)
        self.path = path
        self.columns: list[str] = []

    def before_train(self, trainer: Trainer) -> None:
        parts = [f"loss/{k}" for k in (*trainer.step.parts, "total")]
        self.columns = ["iteration", *parts, "lr", "images_per_second", "val/AP", "val/AP50"]
        kept = []
        if self.path.is_file():
            with open(self.path, newline="") as f:
                kept = [r for r in csv.DictReader(f)
                        if int(r["iteration"]) <= trainer.state.iteration]
        text = io.StringIO()
        writer = csv.DictWriter(text, self.columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(kept)
        with atomic_write(self.path) as f:
            f.write(text.getvalue().encode())

    def write(self, iteration: int, values: dict[str, float]) -> None:
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.columns, extrasaction="ignore").writerow(
                {"iteration": iteration, **{k: f"{v:.6g}" for k, v in values.items()}})


class TensorBoardLog(ScalarLogger):
    """TensorBoard event files in ``RUN/tensorboard``."""

    def __init__(self, folder: Path) -> None:
        super().__init__(every=1)
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(folder))

    def write(self, iteration: int, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, iteration)

    def close(self, trainer: Trainer) -> None:
        self.writer.close()


class WandbLog(ScalarLogger):
    """A Weights & Biases run named after the run's folder, with its config; a resumed run
    continues it."""

    def __init__(self, every: int) -> None:
        super().__init__(every)
        self.wandb = importlib.import_module("wandb")
        self.run: Any = None

    def before_train(self, trainer: Trainer) -> None:
        self.run = self.wandb.init(project="yolov3", name=trainer.out.name,
                                   dir=str(trainer.out), config=trainer.config.to_dict(),
                                   resume="allow", id=_run_id(trainer))

    def write(self, iteration: int, values: dict[str, float]) -> None:
        self.run.log(values, step=iteration)

    def close(self, trainer: Trainer) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None


class MlflowLog(ScalarLogger):
    """An MLflow run named after the run's folder (in ``MLFLOW_TRACKING_URI``, else
    ``./mlruns``), with the config as flattened parameters."""

    def __init__(self, every: int) -> None:
        super().__init__(every)
        self.mlflow = importlib.import_module("mlflow")
        self.active = False

    def before_train(self, trainer: Trainer) -> None:
        self.mlflow.start_run(run_name=trainer.out.name)
        self.active = True
        self.mlflow.log_params(_flatten(trainer.config.to_dict()))

    def write(self, iteration: int, values: dict[str, float]) -> None:
        self.mlflow.log_metrics(values, step=iteration)

    def close(self, trainer: Trainer) -> None:
        if self.active:
            self.mlflow.end_run()
            self.active = False


def _run_id(trainer: Trainer) -> str:
    """A stable id of the run's folder, so that a resumed run continues its W&B run."""
    return hashlib.sha1(str(trainer.out.resolve()).encode()).hexdigest()[:16]


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def make_loggers(names: list[str], out: Path, log_interval: int) -> list[ScalarLogger]:
    """``results.csv`` and the loggers ``names``, which the ``train`` section checked with
    :func:`check_loggers` when it was made."""
    made: list[ScalarLogger] = [CsvLog(out / "results.csv", log_interval)]
    for name in names:
        if name == "tensorboard":
            made.append(TensorBoardLog(out / "tensorboard"))
        elif name == "wandb":
            made.append(WandbLog(log_interval))
        elif name == "mlflow":
            made.append(MlflowLog(log_interval))
    return made
