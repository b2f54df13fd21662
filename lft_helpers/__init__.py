"""lft_helpers: the computing side of the LightweightFineTuning notebook.

Modules follow the pipeline: config, data, modeling, training, evaluation, reporting, plotting,
pipeline (the steps chained), cli (the command-line twin).
"""

from .config import Config, make_config
from .errors import LFTError

__all__ = ["Config", "LFTError", "make_config"]
__version__ = "0.1.0"
