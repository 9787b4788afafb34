"""Fusing a panel's answers: the four methods, the cost cap, early stop.

- ``majority``: answers are grouped by similarity of their comparison keys
  (:mod:`._normalize`, :mod:`._group`); the largest group wins (a tie goes to
  the group with more summed member confidence, then to the earliest).
- ``weighted``: the same groups, each scored by the sum over its members of
  the provider's ``fusion_weight`` x the member's confidence; the highest
  score wins (ties: the earliest group).
- ``semantic``: the keys are embedded, in one call, by ``[fusion]
  embedding_provider`` (``"provider-id"`` or ``"provider-id/model"``) and
  grouped by cosine similarity; the largest group wins, as for majority.
- ``synthesis``: the ``[fusion] synthesizer`` model gets one prompt with the
  question and every answer (Mixture-of-Agents' aggregate step) and writes the
  result.

All methods use ``[fusion] similarity_threshold`` as the bar for "the same
answer". A member's confidence (:func:`member_confidence`) is 1.0 for a clean
finish and lower when its answer was cut or flagged.

Early stop: once ``min_agreement`` of the panel (at least two members) agree
by the majority grouping, the members still running are cancelled, whatever
the method (so weighted and semantic fusions then decide among the answers in
hand, and the synthesizer reads only those).

Cost cap: with ``max_cost_usd``, the worst case of every call the fusion may
make (each member's, the synthesizer's or the embeddings') is added up before
any call, and the fusion is refused if it is over the cap or unbounded.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, cast

from polyroute.errors import (
    BudgetExceeded,
    ConfigError,
    FusionCostCapError,
    InvalidResponseError,
    NotEnoughAnswersError,
    ProviderError,
    UnsupportedError,
    usd_text,
)
from polyroute.fusion._group import Groups, group_texts, group_vectors, largest
from polyroute.fusion._normalize import comparison_key
from polyroute.fusion._panel import Caller, Outcome, ask_panel
from polyroute.fusion._result import (
    METHODS,
    AuxiliaryCall,
    FusionMethod,
    FusionResult,
    MemberResponse,
)
from polyroute.ledger import embedding_worst_case_usd, output_bound, worst_case_usd
from polyroute.router.targets import resolve_target, split_setting
from polyroute.tokens import BOUND_BYTES_PER_TOKEN, BOUND_MESSAGE_TOKENS, prompt_token_bound
from polyroute.types import ChatRequest, ChatResponse, EmbeddingRequest, Message, Target, Usage

if TYPE_CHECKING:
    from polyroute.catalog import Catalog, CatalogModel
    from polyroute.config import Config
    from polyroute.ledger import Meter
    from polyroute.providers import ProviderClient
    from polyroute.router.breaker import Breakers
    from polyroute.router.stats import LatencyStats

MEMBER_CONFIDENCE: Mapping[str, float] = {
    "stop": 1.0,
    "tool_calls": 1.0,
    "other": 0.75,  # an end the vendor did not explain
    "length": 0.5,  # cut by max_tokens: the conclusion may be missing
    "content_filter": 0.25,  # withheld or cut for safety
    "error": 0.0,
}
"""A member's confidence by how its answer ended."""

SYNTHESIS_INSTRUCTIONS = (
    "You are given a question and the answers several AI models gave to it. Write the "
    "single best answer to the question. Judge the answers critically: some may be wrong, "
    "incomplete or biased. Keep what is correct, settle disagreements on the merits, and do "
    "not mention the answers or the models. Reply with the answer only."
)


def member_confidence(response: ChatResponse) -> float:
    """1.0 for a clean finish (``stop``, ``tool_calls``), less when cut or flagged."""
    return MEMBER_CONFIDENCE.get(response.finish_reason, MEMBER_CONFIDENCE["other"])


def synthesis_messages(messages: Sequence[Message], answers: Sequence[str]) -> list[Message]:
    """The synthesizer's prompt: the question (the conversation) and every answer, numbered."""
    system = "\n\n".join(m.text for m in messages if m.role == "system")
    turns = [m for m in messages if m.role != "system"]
    if len(turns) == 1:
        question = turns[0].text
    else:
        question = "\n\n".join(f"{m.role}: {m.text}" for m in turns)
    parts = []
    if system:
        parts.append(f"Instructions the models were given:\n{system}")
    parts.append(f"Question:\n{question}")
    parts.append(
        f"Answers ({len(answers)}):\n\n"
        + "\n\n".join(f"[{i}]\n{a.strip()}" for i, a in enumerate(answers, 1))
    )
    return [Message.system(SYNTHESIS_INSTRUCTIONS), Message.user("\n\n".join(parts))]


def early_stop_rule(
    panel_size: int, min_agreement: float, threshold: float
) -> Callable[[Sequence[Outcome | None]], bool]:
    """A test for :func:`ask_panel`: enough answers so far agree (see module docs)."""
    # the epsilon keeps 0.66 x 3 = 1.98 (and 2/3 x 3 = 2.0000000000000004) at 2
    need = max(2, math.ceil(min_agreement * panel_size - 1e-9))

    def enough(outcomes: Sequence[Outcome | None]) -> bool:
        keys = [comparison_key(text) for o in outcomes if o is not None and (text := _text(o))]
        return len(keys) >= need and largest(group_texts(keys, threshold)) >= need

    return enough


@dataclass(frozen=True, slots=True)
class _Answers:
    """The members that answered: their indices in the panel, texts, keys and scores."""

    index: list[int]
    content: list[str]
    keys: list[str]
    confidence: list[float]


class Fuser:
    """Runs fusions for one client: its config, catalog, clients, meter, breakers and stats.

    ``refusals`` collects the budget refusals met, for the client to keep those
    providers out of routing for a while.
    """

    def __init__(
        self,
        config: Config,
        catalog: Catalog,
        client: Callable[[str], ProviderClient],
        meter: Meter,
        *,
        breakers: Breakers | None = None,
        stats: LatencyStats | None = None,
    ) -> None:
        self.config = config
        self.catalog = catalog
        self.client = client
        self.meter = meter
        self.breakers = breakers
        self.stats = stats
        self.refusals: list[BudgetExceeded] = []

    async def fuse(
        self,
        messages: Sequence[Message],
        members: Sequence[Target],
        *,
        method: FusionMethod | None = None,
        min_agreement: float | None = None,
        max_tokens: int | None = None,
        early_stop: bool = False,
        max_cost_usd: float | None = None,
        timeout_s: float | None = None,
    ) -> FusionResult:
        """Ask ``members`` at once and fuse their answers (see module docs).

        Raises :class:`ConfigError` (before any call) when the method's
        provider is unset or cannot serve, :class:`FusionCostCapError` when the
        worst case is over ``max_cost_usd``, :class:`NotEnoughAnswersError`
        when fewer than two members answered (:class:`BudgetExceeded` if
        budgets refused all the others), and the synthesizer's or embedding
        provider's error if that call fails.
        """
        settings = self.config.settings.fusion
        method = method or settings.method
        if method not in METHODS:
            raise ValueError(f"unknown fusion method {method!r} (known: {', '.join(METHODS)})")
        agreement_bar = settings.min_agreement if min_agreement is None else min_agreement
        if not 0 <= agreement_bar <= 1:
            raise ValueError(f"min_agreement must be in 0..1, not {agreement_bar}")
        if len(members) < 2:
            raise ValueError(f"fusion needs at least 2 panel members, got {len(members)}")
        timeout = self.config.settings.router.timeout_s if timeout_s is None else timeout_s
        if timeout <= 0:
            raise ValueError(f"member_timeout_s must be positive, not {timeout}")

        embedder = self._embedder() if method == "semantic" else None
        synthesizer = self._synthesizer() if method == "synthesis" else None
        aux = [t for t in (embedder, synthesizer) if t is not None]
        # a member whose key cannot be had is a config error, before anyone is called
        clients = {t.provider: self.client(t.provider) for t in [*members, *aux]}
        request = ChatRequest("", tuple(messages), max_tokens=max_tokens)
        if max_cost_usd is not None:
            self._check_cap(max_cost_usd, members, request, synthesizer, embedder)

        threshold = settings.similarity_threshold
        caller = Caller(self.meter, clients, self.breakers, self.stats, timeout)
        stop = early_stop_rule(len(members), agreement_bar, threshold) if early_stop else None
        outcomes, stopped = await ask_panel(caller, members, request, stop)
        self.refusals.extend(o.exc for o in outcomes if isinstance(o.exc, BudgetExceeded))
        answers = self._answers(outcomes)

        embedded: AuxiliaryCall | None = None
        if embedder is not None:
            vectors, embedded = await self._embed(caller, embedder, answers.keys)
            groups = group_vectors(vectors, threshold)
        else:
            groups = group_texts(answers.keys, threshold)
        synthesized: AuxiliaryCall | None = None
        winner: int | None = None
        if synthesizer is not None:
            result, synthesized = await self._synthesize(
                caller, synthesizer, messages, answers.content, max_tokens
            )
            confidence = agreement = largest(groups) / len(answers.index)
        else:
            weights = None
            if method == "weighted":
                weights = [self._weight(members[i].provider) for i in answers.index]
            winner, confidence, agreement, result = _verdict(groups, answers, weights)

        responses = _responses(outcomes, answers, groups)
        costs = [r.cost_usd for r in responses]
        costs += [c.cost_usd for c in (synthesized, embedded) if c is not None]
        total = None if any(c is None for c in costs) else math.fsum(cast(list[float], costs))
        return FusionResult(
            result=result,
            method=method,
            confidence=confidence,
            agreement=agreement,
            total_cost_usd=total,
            responses=responses,
            groups=tuple(tuple(answers.index[i] for i in g) for g in groups),
            winner=winner,
            min_agreement=agreement_bar,
            early_stopped=stopped,
            synthesizer=synthesized,
            embeddings=embedded,
        )

    # -- the panel's answers ---------------------------------------------------

    def _answers(self, outcomes: Sequence[Outcome]) -> _Answers:
        """The answers, in panel order; fewer than two is an error."""
        index = [i for i, o in enumerate(outcomes) if _text(o)]
        content = [_text(outcomes[i]) for i in index]
        answers = _Answers(
            index,
            content,
            [comparison_key(c) for c in content],
            [member_confidence(cast(ChatResponse, outcomes[i].response)) for i in index],
        )
        if len(index) >= 2:
            return answers
        missing = [o for o in outcomes if not _text(o)]
        refused = [o.exc for o in missing if isinstance(o.exc, BudgetExceeded)]
        if refused and len(refused) == len(missing):
            raise refused[0]  # budgets alone kept the panel short: exit 3, as for ask
        why = "; ".join(f"{o.target.provider}/{o.target.model}: {_why(o)}" for o in missing)
        raise NotEnoughAnswersError(
            f"fusion needs at least 2 answers, got {len(index)} of {len(outcomes)}: {why}",
            _responses(outcomes, answers, [[k] for k in range(len(index))]),
        )

    def _weight(self, provider_id: str) -> float:
        return self.config.settings.providers[provider_id].fusion_weight

    # -- the method's own call ----------------------------------------------------

    def _embedder(self) -> Target:
        """``[fusion] embedding_provider`` as a target that can embed, or a ConfigError."""
        where = "fusion.embedding_provider"
        name = self.config.settings.fusion.embedding_provider
        source = self.config.source
        if not name:
            raise ConfigError(
                f"{source}: {where}: semantic fusion needs a provider that can embed "
                "(set [fusion] embedding_provider to a provider id)"
            )
        pid, model = split_setting(self.config, name, where)
        client = self.client(pid)
        ptype = client.provider.type
        try:  # a pure translation, no I/O: does this wire protocol have an embeddings API?
            client.protocol.embed(EmbeddingRequest(model or "probe", ("probe",)))
        except UnsupportedError:
            raise ConfigError(
                f"{source}: {where}: provider {pid!r} ({ptype}) cannot embed"
            ) from None
        if not model:
            configured = self.config.settings.providers[pid].models
            known = [m.id for m in self.catalog.for_type(ptype)]
            model = next(
                (
                    m
                    for m in [*configured, *known]
                    if "embeddings" in self.catalog.get(ptype, m).capabilities
                ),
                "",
            )
        if not model:
            raise ConfigError(
                f"{source}: {where}: no embedding model known for provider {pid!r}; "
                "name one as 'provider-id/model'"
            )
        return Target(pid, model)

    def _synthesizer(self) -> Target:
        name = self.config.settings.fusion.synthesizer
        if not name:
            raise ConfigError(
                f"{self.config.source}: fusion.synthesizer: synthesis needs a synthesizer "
                'model (set [fusion] synthesizer = "provider-id/model")'
            )
        return resolve_target(self.config, self.catalog, name, "fusion.synthesizer")

    async def _embed(
        self, caller: Caller, target: Target, texts: Sequence[str]
    ) -> tuple[list[list[float]], AuxiliaryCall]:
        request = EmbeddingRequest(target.model, tuple(texts))
        try:
            done = await self.meter.embed(
                caller.clients[target.provider], request, timeout_s=caller.timeout_s
            )
        except BudgetExceeded as exc:
            self.refusals.append(exc)
            raise
        vectors = [list(v) for v in done.response.vectors]
        dims = {len(v) for v in vectors}
        if len(vectors) != len(texts) or len(dims) != 1 or 0 in dims:
            raise InvalidResponseError(
                f"embeddings: {len(vectors)} vectors of {sorted(dims)} dimensions "
                f"for {len(texts)} answers",
                provider=target.provider,
            )
        call = AuxiliaryCall(target.provider, target.model, done.cost_usd, done.latency_ms)
        return vectors, call

    async def _synthesize(
        self,
        caller: Caller,
        target: Target,
        messages: Sequence[Message],
        answers: Sequence[str],
        max_tokens: int | None,
    ) -> tuple[str, AuxiliaryCall]:
        request = ChatRequest(
            target.model, tuple(synthesis_messages(messages, answers)), max_tokens=max_tokens
        )
        outcome = await caller.call(target, request)
        if isinstance(outcome.exc, BudgetExceeded):
            self.refusals.append(outcome.exc)
        if outcome.exc is not None:
            raise outcome.exc
        text = _text(outcome)
        if not text:
            raise ProviderError(
                f"synthesizer {target.model}: {outcome.error or 'an empty answer'}",
                provider=target.provider,
            )
        call = AuxiliaryCall(target.provider, target.model, outcome.cost_usd, outcome.latency_ms)
        return text, call

    # -- the cost cap ---------------------------------------------------------

    def _check_cap(
        self,
        cap: float,
        members: Sequence[Target],
        request: ChatRequest,
        synthesizer: Target | None,
        embedder: Target | None,
    ) -> None:
        """Refuse, before any call, a fusion whose worst case is over ``cap`` or unbounded."""
        parts: list[tuple[str, float | None]] = []
        answer_tokens = 0  # the most the panel can write: what the synthesizer/embedder read
        for m in members:
            entry = self._entry(m)
            answer_tokens += output_bound(entry, request.max_tokens)
            worst = worst_case_usd(entry, replace(request, model=m.model))
            parts.append((f"{m.provider}/{m.model}", worst))
        if synthesizer is not None:
            entry = self._entry(synthesizer)
            prompt = ChatRequest(synthesizer.model, tuple(synthesis_messages(request.messages, [])))
            usage = Usage(
                prompt_token_bound(prompt) + answer_tokens + BOUND_MESSAGE_TOKENS * len(members),
                output_bound(entry, request.max_tokens),
            )
            worst = None if entry.price is None else entry.price.cost(usage)
            parts.append((f"synthesizer {synthesizer.provider}/{synthesizer.model}", worst))
        if embedder is not None:
            entry = self._entry(embedder)
            # the answers' keys are at most the answers: bound them by the panel's output
            probe = EmbeddingRequest(
                embedder.model, ("x" * (BOUND_BYTES_PER_TOKEN * answer_tokens),)
            )
            worst = embedding_worst_case_usd(entry, probe)
            parts.append((f"embeddings {embedder.provider}/{embedder.model}", worst))
        unpriced = [who for who, usd in parts if usd is None]
        if unpriced:
            raise FusionCostCapError(
                f"fusion refused before any call: {', '.join(unpriced)} "
                f"{'is' if len(unpriced) == 1 else 'are'} unpriced, so the worst case has no "
                f"bound to check against max_cost_usd {usd_text(cap)}",
                cap_usd=cap,
                worst_case_usd=None,
            )
        total = math.fsum(cast(float, usd) for _, usd in parts)
        if total > cap:
            each = ", ".join(f"{who} {usd_text(cast(float, usd))}" for who, usd in parts)
            raise FusionCostCapError(
                f"fusion refused before any call: its worst-case cost {usd_text(total)} is over "
                f"max_cost_usd {usd_text(cap)} ({each})",
                cap_usd=cap,
                worst_case_usd=total,
            )

    def _entry(self, target: Target) -> CatalogModel:
        ptype = self.config.settings.providers[target.provider].type
        return self.catalog.get(ptype, target.model)


def _text(outcome: Outcome) -> str:
    """The member's answer, ``""`` if it has none (failed, or empty)."""
    if outcome.response is None:
        return ""
    return outcome.response.content if outcome.response.content.strip() else ""


def _why(outcome: Outcome) -> str:
    if outcome.error:
        return outcome.error
    return "an empty answer" if outcome.response is not None else outcome.kind


def _verdict(
    groups: Groups, answers: _Answers, weights: Sequence[float] | None
) -> tuple[int, float, float, str]:
    """The winning group, its confidence and agreement, and its best answer (its
    highest-confidence member, the earliest on a tie). ``weights``: score the groups
    (weighted), else the largest wins."""
    if weights is None:
        winner, confidence = _pick_largest(groups, answers.confidence)
    else:
        winner, confidence = _pick_weighted(groups, answers.confidence, weights)
    best = max(groups[winner], key=lambda i: (answers.confidence[i], -i))
    agreement = len(groups[winner]) / len(answers.index)
    return winner, confidence, agreement, answers.content[best]


def _pick_largest(groups: Groups, confidence: Sequence[float]) -> tuple[int, float]:
    """The largest group (ties: more summed confidence, then the earliest); its share."""
    n = sum(len(g) for g in groups)
    key = [(len(g), math.fsum(confidence[i] for i in g)) for g in groups]
    winner = max(range(len(groups)), key=lambda k: (key[k], -k))
    return winner, len(groups[winner]) / n


def _pick_weighted(
    groups: Groups, confidence: Sequence[float], weight: Sequence[float]
) -> tuple[int, float]:
    """The group with the highest sum of weight x confidence (ties: the earliest); its share
    of all scores (its share of answers if every score is 0)."""
    scores = [math.fsum(weight[i] * confidence[i] for i in g) for g in groups]
    winner = max(range(len(groups)), key=lambda k: (scores[k], -k))
    total = math.fsum(scores)
    if total <= 0:
        return winner, len(groups[winner]) / sum(len(g) for g in groups)
    return winner, scores[winner] / total


def _responses(
    outcomes: Sequence[Outcome], answers: _Answers, groups: Groups
) -> list[MemberResponse]:
    group_of = {answers.index[i]: k for k, g in enumerate(groups) for i in g}
    confidence = dict(zip(answers.index, answers.confidence, strict=True))
    out = []
    for i, o in enumerate(outcomes):
        answered = i in confidence
        out.append(
            MemberResponse(
                provider=o.target.provider,
                model=(o.response.model if o.response is not None else "") or o.target.model,
                content=o.response.content if o.response is not None else "",
                confidence=confidence.get(i, 0.0),
                cost_usd=o.cost_usd,
                ok=answered,
                error=None if answered else _why(o),
                latency_ms=o.latency_ms,
                group=group_of.get(i),
                finish_reason=o.response.finish_reason if o.response is not None else None,
            )
        )
    return out
