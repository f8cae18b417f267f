"""artquant_data: rated-artwork datasets, level distributions and ArtQuant training samples.

* Records: :class:`ArtRecord` (frozen) with an optional :class:`HierarchicalDescription`.
* Loaders: :func:`load_apddv2`, :func:`load_baid`, :func:`load_table` (your own CSV/JSON/JSONL
  with a :class:`ColumnMapping`).
* Level distributions: :func:`estimate_level_distribution` (ArtQuant's Score-Based
  Distribution Estimation, exact and fast), :func:`level_distribution_from_mean_std` (DeQA
  style), :func:`level_distribution_from_histogram` (AVA style), :func:`hard_level`,
  :func:`expected_score`, :func:`score_std`.
* Training JSON: :class:`TrainingSample`, :func:`read_training_json`,
  :func:`write_training_json` (ours or the original ArtQuant / DeQA-Score format), and the
  builders :func:`build_score_samples`, :func:`build_attribute_samples`,
  :func:`build_description_samples`.
* Attributes: :data:`APDDV2_ATTRIBUTE_SPECS`, the canonical table of APDDv2's ten attributes
  (:class:`AttributeSpec`: name, column-safe id, CSV column, question, answer stem);
  :func:`find_attribute`, :func:`attribute_spec`, :func:`attribute_id`.
* Images: :func:`resolve_images` joins records to an image root and reports missing files.

Example:
    >>> from artquant_data import estimate_level_distribution, hard_level
    >>> estimate_level_distribution(6.5).round(3).tolist()
    [0.003, 0.605, 0.376, 0.017, 0.0]
    >>> hard_level(6.5)
    'good'
"""

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from artquant_data._attributes import (
    APDDV2_ATTRIBUTE_SPECS,
    APDDV2_ATTRIBUTES,
    ATTRIBUTE_QUESTION,
    ATTRIBUTE_STEM,
    AttributeSpec,
    attribute_id,
    attribute_spec,
    find_attribute,
)
from artquant_data._descriptions import attach_descriptions, load_descriptions
from artquant_data._distribution import (
    ARTQUANT_LEVEL_VALUES,
    LEVEL_NAMES,
    estimate_level_distribution,
    expected_score,
    fit_level_gaussian,
    hard_level,
    level_distribution_from_histogram,
    level_distribution_from_mean_std,
    score_std,
)
from artquant_data._records import ArtRecord, HierarchicalDescription, Split, normalise_split
from artquant_data._resolve import (
    ImagePathError,
    ImageResolution,
    MissingImagesError,
    resolve_images,
)
from artquant_data._samples import (
    ATTRIBUTE_ANSWER,
    ATTRIBUTE_PHRASES,
    ATTRIBUTE_PROMPTS,
    DESCRIPTION_PROMPTS,
    SCORE_ANSWER,
    SCORE_PROMPTS,
    build_attribute_samples,
    build_description_samples,
    build_score_samples,
)
from artquant_data._stats import dataset_stats, format_stats, plot_stats
from artquant_data._training_json import (
    IMAGE_TOKEN,
    TaskType,
    TrainingFormat,
    TrainingSample,
    Turn,
    read_training_json,
    write_training_json,
)
from artquant_data.datasets import (
    ColumnMapping,
    load_apddv2,
    load_baid,
    load_table,
)

try:
    __version__ = _version("artquant-data")
except _PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "APDDV2_ATTRIBUTES",
    "APDDV2_ATTRIBUTE_SPECS",
    "ARTQUANT_LEVEL_VALUES",
    "ATTRIBUTE_ANSWER",
    "ATTRIBUTE_PHRASES",
    "ATTRIBUTE_PROMPTS",
    "ATTRIBUTE_QUESTION",
    "ATTRIBUTE_STEM",
    "DESCRIPTION_PROMPTS",
    "IMAGE_TOKEN",
    "LEVEL_NAMES",
    "SCORE_ANSWER",
    "SCORE_PROMPTS",
    "ArtRecord",
    "AttributeSpec",
    "ColumnMapping",
    "HierarchicalDescription",
    "ImagePathError",
    "ImageResolution",
    "MissingImagesError",
    "Split",
    "TaskType",
    "TrainingFormat",
    "TrainingSample",
    "Turn",
    "__version__",
    "attach_descriptions",
    "attribute_id",
    "attribute_spec",
    "build_attribute_samples",
    "build_description_samples",
    "build_score_samples",
    "dataset_stats",
    "estimate_level_distribution",
    "expected_score",
    "find_attribute",
    "fit_level_gaussian",
    "format_stats",
    "hard_level",
    "level_distribution_from_histogram",
    "level_distribution_from_mean_std",
    "load_apddv2",
    "load_baid",
    "load_descriptions",
    "load_table",
    "normalise_split",
    "plot_stats",
    "read_training_json",
    "resolve_images",
    "score_std",
    "write_training_json",
]
