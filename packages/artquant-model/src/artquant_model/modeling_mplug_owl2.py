"""Deprecated alias: the module moved to ``artquant_model.backbones.mplug_owl2``.

The module moved when the backbone layer was added; this name keeps old imports working and
will be removed in a later release. Import from the new path.
"""

import sys as _sys

from artquant_model.backbones.mplug_owl2 import modeling_mplug_owl2 as _moved
from artquant_model.backbones.mplug_owl2.modeling_mplug_owl2 import *  # noqa: F403  (names for type checkers)

# The same module object under both names: private names and monkeypatching work through it.
_sys.modules[__name__] = _moved
