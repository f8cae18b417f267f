"""artquant_eval: metrics for image quality and aesthetics assessment.

Standalone (numpy and scipy only; matplotlib for plots through the ``plot`` extra):

* score metrics as pure functions of two 1-D array-likes: :func:`srcc`, :func:`plcc` (raw or
  after a VQEG logistic fit, :func:`fit_logistic`), :func:`krcc`, :func:`rmse`, :func:`mae`,
  :func:`mse`, :func:`binary_accuracy`;
* distances between level distributions: :func:`kl_divergence`, :func:`js_divergence`,
  :func:`wasserstein_distance`;
* :func:`evaluate` -> :class:`EvalReport`: every metric, percentile bootstrap intervals and
  per-group reports, as JSON or a printed table; :class:`MetricAccumulator` gathers batches
  (and other processes' accumulators) and evaluates through the same functions;
* :func:`evaluate_attributes` -> :class:`AttributeEvaluation`: SRCC, PLCC and KRCC with
  bootstrap intervals per attribute, from a scores file's ``score_<attribute>`` columns against
  APDDv2's label CSV (empty labels skipped and counted); :func:`attribute_plot` draws them;
* :func:`read_records` / :func:`join_by_id` for prediction and target files, and the
  ``artquant-eval`` command line.

Example:
    >>> import artquant_eval as ae
    >>> ae.srcc([1, 2, 3, 4], [10, 30, 20, 40])
    0.8
    >>> print(ae.evaluate([1, 2, 3, 4, 5], [2, 1, 4, 3, 5], fit=None).to_table())
    n = 5
    metric   value
    SRCC    0.8000
    PLCC    0.8000
    KRCC    0.6000
    RMSE    0.8944
    MAE     0.8000
    MSE     0.8000
"""

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from artquant_eval._accumulator import MetricAccumulator
from artquant_eval._attributes import (
    APDDV2_ATTRIBUTE_COLUMNS,
    AttributeEvaluation,
    AttributeResult,
    attribute_id,
    evaluate_attributes,
    resolve_attributes,
)
from artquant_eval._distribution import js_divergence, kl_divergence, wasserstein_distance
from artquant_eval._fitting import LogisticFit, fit_logistic, logistic4, logistic5
from artquant_eval._functional import binary_accuracy, krcc, mae, mse, plcc, rmse, srcc
from artquant_eval._io import DataFileError, JoinedScores, join_by_id, read_records
from artquant_eval._plot import attribute_plot, scatter_plot
from artquant_eval._report import (
    METRICS,
    ConfidenceInterval,
    EvalReport,
    LargestError,
    evaluate,
)
from artquant_eval._validation import (
    ConstantInputError,
    LogisticFitError,
    MetricInputError,
    TooFewPairsError,
)

try:
    __version__ = _version("artquant-eval")
except _PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "APDDV2_ATTRIBUTE_COLUMNS",
    "METRICS",
    "AttributeEvaluation",
    "AttributeResult",
    "ConfidenceInterval",
    "ConstantInputError",
    "DataFileError",
    "EvalReport",
    "JoinedScores",
    "LargestError",
    "LogisticFit",
    "LogisticFitError",
    "MetricAccumulator",
    "MetricInputError",
    "TooFewPairsError",
    "__version__",
    "attribute_id",
    "attribute_plot",
    "binary_accuracy",
    "evaluate",
    "evaluate_attributes",
    "fit_logistic",
    "join_by_id",
    "js_divergence",
    "kl_divergence",
    "krcc",
    "logistic4",
    "logistic5",
    "mae",
    "mse",
    "plcc",
    "read_records",
    "resolve_attributes",
    "rmse",
    "scatter_plot",
    "srcc",
    "wasserstein_distance",
]
