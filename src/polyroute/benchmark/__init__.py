"""The provider benchmark (``polyroute bench``, DESIGN.md §5 and §10).

Suites of graded cases run N times per (provider, model) through the normal
metered path; samples are stored in the ledger's database as they come, so a
run can be resumed and compared with earlier ones.
"""

from polyroute.benchmark._graders import GRADER_KINDS, Grade, Grader, judge_score, parse_grader
from polyroute.benchmark._learn import RoutingEvaluation, StrategyScore, evaluate_routing
from polyroute.benchmark._model import RunInfo, RunStatus, Sample, SampleKey
from polyroute.benchmark._recommend import Recommendation, pareto, recommend, recommendations
from polyroute.benchmark._report import table, write_report
from polyroute.benchmark._stats import PairSummary, Quality, summarize
from polyroute.benchmark._store import BenchStore
from polyroute.benchmark._suite import BUILTIN, Case, Suite, load_suite, load_suites

__all__ = [
    "BUILTIN",
    "GRADER_KINDS",
    "BenchStore",
    "Case",
    "Grade",
    "Grader",
    "PairSummary",
    "Quality",
    "Recommendation",
    "RoutingEvaluation",
    "RunInfo",
    "RunStatus",
    "Sample",
    "SampleKey",
    "StrategyScore",
    "Suite",
    "evaluate_routing",
    "judge_score",
    "load_suite",
    "load_suites",
    "pareto",
    "parse_grader",
    "recommend",
    "recommendations",
    "summarize",
    "table",
    "write_report",
]
