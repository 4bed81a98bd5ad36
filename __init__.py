"""litvision: Lightning DataModules and LightningModules for image classification, composed with Hydra.

The repository root is this package: ``litvision.datamodules`` is ``datamodules/``,
``litvision.conf`` is ``conf/``, ``litvision.train`` is ``train.py`` (see README, Layout).
"""

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network check when albumentations is imported

from litvision.launch.resolvers import register_resolvers

# ``${lv.mul:...}`` & co. in conf/ must exist before any config using them is resolved,
# also in a user's own Hydra app that composes our config groups.
register_resolvers()

__version__ = "0.2.0"
