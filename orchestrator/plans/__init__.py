"""Planners by job type."""

from __future__ import annotations

from orchestrator.plans.analyze import AnalyzePlanner
from orchestrator.plans.base import Outcome, PlanContext, PlanError, Planner, StepSpec
from orchestrator.plans.chat import ChatPlanner
from orchestrator.plans.openai_batch import OpenAIBatchPlanner
from orchestrator.plans.sheets import SheetsPlanner
from orchestrator.plans.summarize import SummarizePlanner

PLANNERS: dict[str, Planner] = {
    "chat": ChatPlanner(),
    "summarize": SummarizePlanner(),
    "analyze": AnalyzePlanner(),
    "batch": SheetsPlanner(),
    "openai_batch": OpenAIBatchPlanner(),
}


def planner_for(job_type: str) -> Planner:
    """The planner of a job type."""
    return PLANNERS[job_type]


__all__ = ["Outcome", "PlanContext", "PlanError", "Planner", "StepSpec", "planner_for"]
