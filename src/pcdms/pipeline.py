"""`from pcdms.pipeline import PCDMsPipeline`, the import path the README and users' code name, kept working since
the pipeline moved to `pcdms.sampling.pipeline` when the modules were grouped by layer (issue #29)."""

from pcdms.sampling.pipeline import PCDMsOutput, PCDMsPipeline

__all__ = ["PCDMsOutput", "PCDMsPipeline"]
