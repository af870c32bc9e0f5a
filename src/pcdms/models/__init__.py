"""The three PCDMs stages (paper Sec. 3.2-3.4): prior -> inpaint -> refine, with save/load; beside them the
frozen encoders (`encoders`), the diffusion process they are trained and sampled with (`diffusion`) and the
model folder: its one writer (`folder`), which folders are usable (`check`), the authors' checkpoints (`convert`)."""

from pcdms.config import STAGE_NAMES
from pcdms.errors import UserError
from pcdms.models.inpaint import InpaintModel
from pcdms.models.io import StageModel
from pcdms.models.prior import PriorModel
from pcdms.models.refine import RefineModel

#: each stage's class by name, in data-flow order: the one map the pipeline, training and conversion use
STAGES: dict[str, type[StageModel]] = {"prior": PriorModel, "inpaint": InpaintModel, "refine": RefineModel}
assert tuple(STAGES) == STAGE_NAMES


def stage_class(stage: str) -> type[StageModel]:
    """The class of stage `stage`, or a UserError naming the stages."""
    if stage not in STAGES:
        raise UserError(f"--stage must be one of {', '.join(STAGES)}, got '{stage}'")
    return STAGES[stage]


__all__ = ["STAGES", "InpaintModel", "PriorModel", "RefineModel", "StageModel", "stage_class"]
