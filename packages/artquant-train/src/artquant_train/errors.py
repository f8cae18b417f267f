"""Exceptions raised by artquant-train, each naming the bad value and what is allowed."""

from __future__ import annotations


class TrainError(RuntimeError):
    """Base class of training errors."""


class SampleError(ValueError):
    """A training sample cannot be used (bad turns, unknown task, too long)."""


class AnswerFormatError(SampleError):
    """A score sample's answer lacks the level prefix or a level word after it."""


class LevelTokenError(ValueError):
    """A level word is not a single token after the level prefix."""


class MissingImageError(FileNotFoundError):
    """Image files referenced by the data do not exist."""


class EmptyDatasetError(ValueError):
    """A data file, or the mixed training list, holds no sample."""


class NonFiniteLossError(TrainError):
    """The loss became NaN or infinite; training stopped, the last good checkpoint is kept."""


class CheckpointStateError(TrainError):
    """A resumable checkpoint is missing files or does not match the model."""


__all__ = [
    "AnswerFormatError",
    "CheckpointStateError",
    "EmptyDatasetError",
    "LevelTokenError",
    "MissingImageError",
    "NonFiniteLossError",
    "SampleError",
    "TrainError",
]
