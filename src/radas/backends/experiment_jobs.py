"""A radas experiment's Ray Job, as the job server reports it.

Jobs carry metadata (user, experiment, full name: ``submission.job_metadata``), which is how
every lifecycle operation finds "the job of this experiment".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

ACTIVE_STATUSES = ("PENDING", "RUNNING")


@dataclass
class ExperimentJob:
    """A radas experiment's Ray Job, as the job server reports it."""

    job_id: str
    user_name: str
    experiment_name: str
    full_name: str
    run_choice: str
    status: str
    start_time: datetime | None
    end_time: datetime | None
    message: str
    cwd: str

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @classmethod
    def from_details(cls, details: Any) -> ExperimentJob | None:
        metadata = details.metadata or {}
        if "radas_user" not in metadata:
            return None
        return cls(
            job_id=details.submission_id or details.job_id or "",
            user_name=metadata["radas_user"],
            experiment_name=metadata.get("radas_experiment", ""),
            full_name=metadata.get("radas_full_name", ""),
            run_choice=metadata.get("radas_run_choice", ""),
            status=str(getattr(details.status, "value", details.status)),
            start_time=_from_ms(details.start_time),
            end_time=_from_ms(details.end_time),
            message=details.message or "",
            cwd=metadata.get("radas_cwd", ""),
        )


def _from_ms(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(value / 1000) if value else None
