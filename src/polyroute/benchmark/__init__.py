"""The provider benchmark (``polyroute bench``, DESIGN.md §5 and §10).

Suites of graded cases run N times per (provider, model) through the normal
metered path; samples are stored in the ledger's database as they come, so a
run can be resumed and compared with earlier ones.
"""

from polyroute.benchmark._model import RunInfo, RunStatus, Sample, SampleKey
from polyroute.benchmark._recommend import Recommendation, pareto, recommend, recommendations
from polyroute.benchmark._stats import PairSummary, Quality, summarize

__all__ = [
    "PairSummary",
    "Quality",
    "Recommendation",
    "RunInfo",
    "RunStatus",
    "Sample",
    "SampleKey",
    "pareto",
    "recommend",
    "recommendations",
    "summarize",
]
