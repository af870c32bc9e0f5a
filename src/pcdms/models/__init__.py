"""The three PCDMs stages (paper Sec. 3.2-3.4): prior -> inpaint -> refine, with save/load."""

from pcdms.models.inpaint import InpaintModel
from pcdms.models.io import StageModel
from pcdms.models.prior import PriorModel
from pcdms.models.refine import RefineModel

__all__ = ["InpaintModel", "PriorModel", "RefineModel", "StageModel"]
