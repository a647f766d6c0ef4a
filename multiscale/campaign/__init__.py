"""MPI simulation campaigns: parameter sweeps that are reproducible whatever the rank count and
restartable after a crash (``multiscale campaign plan | run | merge | status``)."""
from .._errors import CampaignError, CampaignSpecError
from ._merge import merge_campaign, point_inputs
from ._run import campaign_status, format_plan, format_status, mpi_launched, run_campaign
from ._spec import CampaignSpec, GridPoint, Task, load_spec
from ._tasks import simulate_direct_kwargs

__all__ = ["CampaignError", "CampaignSpec", "CampaignSpecError", "GridPoint", "Task", "campaign_status",
           "format_plan", "format_status", "load_spec", "merge_campaign", "mpi_launched", "point_inputs",
           "run_campaign", "simulate_direct_kwargs"]
