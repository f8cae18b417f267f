"""The aesthetic attributes of APDDv2 as one canonical table: name, id, column, question, stem.

Everything that names an attribute reads it from here: the APDDv2 loader (the CSV column), the
sample builder (the question and the answer stem), the trainer's validation and the files it
writes beside a trained model (the scoring prompt of each attribute), and, through those files,
the SDK. The table is plain data (no torch), so any package may import it.

* ``name``: APDDv2's own name, e.g. ``"Light and shadow"`` (also the key of
  :attr:`ArtRecord.attributes` and the ``attribute`` field of a training sample).
* ``id``: the column-safe id, :func:`attribute_id` of the name (``"light_and_shadow"``); score
  files name their columns ``score_<id>`` and ``std_<id>``.
* ``column``: the column of APDDv2's label CSV (``APDDv2-10023.csv``) that holds it.
* ``question`` / ``stem``: the scoring question and the answer's beginning, ending right before
  the level word (``"The light and shadow of the painting is"``).

Example:
    >>> spec = find_attribute("light_and_shadow")
    >>> spec.name, spec.question
    ('Light and shadow', 'How would you rate the light and shadow of this painting?')
    >>> spec.stem
    'The light and shadow of the painting is'
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

ATTRIBUTE_QUESTION = "How would you rate the {phrase} of this painting?"
"""The canonical scoring question; ``{phrase}`` as in :attr:`AttributeSpec.phrase`."""
ATTRIBUTE_STEM = "The {phrase} of the painting is"
"""The answer stem of an attribute: the answer up to (not including) the level word."""

_ID_PATTERN = re.compile(r"^[a-z0-9]+(?:_[a-z0-9]+)*$")


def attribute_id(name: str) -> str:
    """The column-safe id of an attribute name.

    The rule: lower-case, every run of characters other than ``a-z`` and ``0-9`` becomes one
    underscore, underscores at either end are dropped. Score files use ``score_<id>`` and
    ``std_<id>`` columns.

    Args:
        name: An attribute name, e.g. ``"Light and shadow"``.

    Returns:
        The id, e.g. ``"light_and_shadow"``.

    Raises:
        ValueError: If the name holds no letter or digit.

    Example:
        >>> attribute_id("The sense of order"), attribute_id("Details & texture")
        ('the_sense_of_order', 'details_texture')
    """
    ident = re.sub(r"[^a-z0-9]+", "_", str(name).lower()).strip("_")
    if not ident:
        raise ValueError(f"attribute name {name!r} has no letter or digit to make an id from")
    return ident


class AttributeSpec(BaseModel):
    """One attribute: its names, its scoring question and its answer stem.

    Attributes:
        name: The attribute's own name (APDDv2: ``"Light and shadow"``).
        id: Column-safe id, ``attribute_id(name)``.
        column: The label CSV's column holding it.
        phrase: How it reads inside a sentence (``"the {phrase} of this painting"``).
        question: The canonical scoring question.
        stem: The answer up to the level word, e.g. ``"The color of the painting is"``.

    Example:
        >>> AttributeSpec.from_name("Brushwork").stem
        'The brushwork of the painting is'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    id: str
    column: str = Field(min_length=1)
    phrase: str = Field(min_length=1)
    question: str = Field(min_length=1)
    stem: str = Field(min_length=1)

    @field_validator("id")
    @classmethod
    def _column_safe(cls, value: str) -> str:
        if not _ID_PATTERN.match(value):
            raise ValueError(
                f"attribute id {value!r} is not column-safe: use lower-case letters, digits and"
                " single underscores (see attribute_id)"
            )
        return value

    @field_validator("stem")
    @classmethod
    def _no_trailing_space(cls, value: str) -> str:
        if value != value.strip():
            raise ValueError(f"stem {value!r} must not start or end with whitespace")
        return value

    @classmethod
    def from_name(
        cls, name: str, *, phrase: str | None = None, column: str | None = None
    ) -> AttributeSpec:
        """An attribute outside the table, with the table's question and stem templates.

        Args:
            name: Its name.
            phrase: How it reads in a sentence; default the lower-cased name.
            column: Its label column; default the name.

        Returns:
            The spec (id from :func:`attribute_id`).
        """
        text = phrase if phrase is not None else name.strip().lower()
        return cls(
            name=name,
            id=attribute_id(name),
            column=column if column is not None else name,
            phrase=text,
            question=ATTRIBUTE_QUESTION.format(phrase=text),
            stem=ATTRIBUTE_STEM.format(phrase=text),
        )


def _apddv2(name: str, phrase: str) -> AttributeSpec:
    return AttributeSpec.from_name(name, phrase=phrase, column=name)


APDDV2_ATTRIBUTE_SPECS: tuple[AttributeSpec, ...] = (
    _apddv2("Theme and logic", "theme and logic"),
    _apddv2("Creativity", "creativity"),
    _apddv2("Layout and composition", "layout and composition"),
    _apddv2("Space and perspective", "space and perspective"),
    _apddv2("The sense of order", "sense of order"),
    _apddv2("Light and shadow", "light and shadow"),
    _apddv2("Color", "color"),
    _apddv2("Details and texture", "details and texture"),
    _apddv2("The overall", "overall effect"),
    _apddv2("Mood", "mood"),
)
"""APDDv2's ten attributes in the label CSV's column order (scores 0–10; a cell is empty
where an attribute does not apply to a painting's category)."""

APDDV2_ATTRIBUTES: tuple[str, ...] = tuple(spec.name for spec in APDDV2_ATTRIBUTE_SPECS)
"""The ten attribute names (= their CSV columns)."""


def find_attribute(
    key: str, table: tuple[AttributeSpec, ...] = APDDV2_ATTRIBUTE_SPECS
) -> AttributeSpec:
    """Look an attribute up by name, id or column (case-insensitive).

    Args:
        key: ``"Color"``, ``"color"``, ``"light_and_shadow"``, ``"Light and shadow"``...
        table: The table to search.

    Returns:
        The matching spec.

    Raises:
        KeyError: If nothing matches; the message lists the known ids.

    Example:
        >>> find_attribute("The overall").id
        'the_overall'
    """
    wanted = str(key).strip().lower()
    for spec in table:
        if wanted in (spec.name.lower(), spec.id, spec.column.lower()):
            return spec
    raise KeyError(
        f"unknown attribute {key!r}; known (id: name): "
        + ", ".join(f"{s.id}: {s.name!r}" for s in table)
    )


def attribute_spec(name: str) -> AttributeSpec:
    """The table's spec of a known attribute, else :meth:`AttributeSpec.from_name`.

    Args:
        name: An attribute name (or id) as a training sample or record carries it.

    Returns:
        The spec.

    Example:
        >>> attribute_spec("Mood").question, attribute_spec("Brushwork").id
        ('How would you rate the mood of this painting?', 'brushwork')
    """
    try:
        return find_attribute(name)
    except KeyError:
        return AttributeSpec.from_name(name)


__all__ = [
    "APDDV2_ATTRIBUTES",
    "APDDV2_ATTRIBUTE_SPECS",
    "ATTRIBUTE_QUESTION",
    "ATTRIBUTE_STEM",
    "AttributeSpec",
    "attribute_id",
    "attribute_spec",
    "find_attribute",
]
