"""The contract check: is a canary's signature one the stable revision's callers can use?

Why: the traffic gates count 5xx, latency and accuracy. A canary whose model expects other inputs
answers 400 to every request, so its error rate is 0 and it would be promoted while every caller
fails. The model server exports its signature as one Prometheus series per input tensor, output
tensor and named feature::

    modelserver_model_signature_info{model, revision, io="input"|"output"|"feature", name, datatype, shape} 1

(``shape`` is comma-separated dims, ``-1`` for a symbolic dim; Prometheus adds ``namespace``). Before
the canary takes any traffic, :func:`check` reads the series of both revisions and compares them:

* **inputs** — the same names; per name the same datatype and the same rank, each dim equal or
  symbolic (``-1``) on either side. A caller's request fits the canary exactly when it fits stable.
* **outputs** — the same names and datatypes. Shapes may differ (e.g. a batch dim becoming
  symbolic): callers read outputs by name and type.
* **features** — the same names (named-feature requests are rejected for an unknown or a missing
  non-imputable field), and the same kind where both revisions report one (``number``/``category``).

The answer is :class:`Compatible`, :class:`Incompatible` (every difference as a readable sentence,
e.g. ``input 'input': FP32 [-1,5] on stable, FP32 [-1,4] on canary``) or :class:`Unknown` (the
canary's pods have not been scraped yet, or Prometheus did not answer): the engine then waits, up
to ``progressDeadlineSeconds``. A stable revision that exports no signature at all (a model server
older than the metric, or a custom one) cannot be compared with: that is :class:`Compatible` with
a ``note`` saying the check was skipped, so upgrading the server never blocks the next rollout. A
stable revision Prometheus has not scraped yet also has no signature; it is told apart by the
absence of ``modelserver_ready`` and is Unknown while the canary's signature is there (Prometheus
does scrape model servers, so stable's will come), :class:`Compatible` with a note when neither
revision is scraped (a Prometheus that does not scrape model servers).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from modelrollout.metrics.connection import CredentialsError, PrometheusConnection
from modelrollout.metrics.provider import PrometheusProvider

METRIC = "modelserver_model_signature_info"
READY_METRIC = "modelserver_ready"
KINDS = ("input", "output", "feature")


# ------------------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class Compatible:
    """The canary accepts what stable accepts; ``note`` says why nothing was compared, if so."""

    note: str = ""


@dataclass(frozen=True)
class Incompatible:
    """Every way the canary's signature differs from stable's, one sentence each."""

    differences: tuple[str, ...]

    @property
    def summary(self) -> str:
        return "; ".join(self.differences)


@dataclass(frozen=True)
class Unknown:
    """No comparison possible yet; ``reason`` says why (for the status message)."""

    reason: str


ContractResult = Compatible | Incompatible | Unknown


# ---------------------------------------------------------------------------------------- signature


@dataclass(frozen=True)
class Entry:
    """One input, output or feature of a signature."""

    datatype: str
    shape: tuple[int, ...] | None  # None: no shape reported (features)

    def render(self, with_shape: bool = True) -> str:
        if not with_shape or self.shape is None:
            return self.datatype or "?"
        return f"{self.datatype} [{','.join(map(str, self.shape))}]"


@dataclass(frozen=True)
class Signature:
    """A revision's signature: per kind (input, output, feature), name -> entry."""

    entries: Mapping[str, Mapping[str, Entry]] = field(default_factory=dict)
    conflicts: tuple[str, ...] = ()  # a name reported twice with different types (should not happen)

    def of(self, kind: str) -> Mapping[str, Entry]:
        return self.entries.get(kind, {})

    @property
    def empty(self) -> bool:
        return not any(self.entries.values())


def parse_shape(text: str) -> tuple[int, ...] | None:
    """``"-1,5"`` -> ``(-1, 5)``; ``""`` is a scalar ``()``; anything unparsable -> None (not compared)."""
    text = text.strip().strip("[]()")
    if not text:
        return ()
    try:
        return tuple(int(d) for d in text.split(","))
    except ValueError:
        return None


def signature_from_series(series: Iterable[Mapping[str, str]]) -> Signature:
    """Build a signature from the label sets of ``modelserver_model_signature_info`` series."""
    entries: dict[str, dict[str, Entry]] = {k: {} for k in KINDS}
    conflicts: list[str] = []
    for labels in series:
        kind, name = labels.get("io", ""), labels.get("name", "")
        if kind not in entries or not name:
            continue  # a kind this operator does not know yet: ignore, never fail
        shape = parse_shape(labels["shape"]) if labels.get("shape") else (None if kind == "feature" else ())
        entry = Entry(labels.get("datatype", ""), shape)
        seen = entries[kind].get(name)
        if seen is not None and seen != entry:
            conflicts.append(f"{kind} '{name}' reported as both {seen.render()} and {entry.render()}")
        entries[kind].setdefault(name, entry)
    return Signature(entries, tuple(conflicts))


def dims_match(stable: tuple[int, ...] | None, canary: tuple[int, ...] | None) -> bool:
    """Same rank and every dim equal or symbolic (-1 or any negative) on either side.

    A shape the server did not report parsably (None) is not held against the canary.
    """
    if stable is None or canary is None:
        return True
    return len(stable) == len(canary) and all(a == b or a < 0 or b < 0 for a, b in zip(stable, canary, strict=True))


def compare(stable: Signature, canary: Signature) -> list[str]:
    """Every difference that would break a caller of stable, as sentences (empty: compatible)."""
    out: list[str] = []
    for kind in KINDS:
        old, new = stable.of(kind), canary.of(kind)
        out += [f"{kind} '{n}' missing on canary" for n in sorted(old.keys() - new.keys())]
        out += [f"{kind} '{n}' only on canary" for n in sorted(new.keys() - old.keys())]
        for n in sorted(old.keys() & new.keys()):
            a, b = old[n], new[n]
            if kind == "input" and (a.datatype != b.datatype or not dims_match(a.shape, b.shape)):
                out.append(f"input '{n}': {a.render()} on stable, {b.render()} on canary")
            elif kind == "output" and a.datatype != b.datatype:
                out.append(f"output '{n}': {a.render(False)} on stable, {b.render(False)} on canary")
            elif kind == "feature" and a.datatype and b.datatype and a.datatype != b.datatype:
                out.append(f"feature '{n}': {a.datatype} on stable, {b.datatype} on canary")
    return out


# ------------------------------------------------------------------------------------------- query


@dataclass(frozen=True)
class SeriesResult:
    """The label sets an instant query returned, or why there are none."""

    labels: tuple[Mapping[str, str], ...] = ()
    error: str | None = None


class SignatureSource(Protocol):
    """A :class:`~modelrollout.metrics.provider.MetricsProvider` that can also return label sets.

    Gates need one number per query; a signature is the labels of many series, hence ``series``.
    """

    def series(self, promql: str) -> SeriesResult:
        """Evaluate ``promql`` now and return every series' labels; never raises."""
        ...


def signature_query(namespace: str, revision: str) -> str:
    """One series per (io, name, datatype, shape) of a revision, however many pods report it."""
    return f'max by (io, name, datatype, shape) ({METRIC}{{namespace="{namespace}", revision="{revision}"}})'


def check(source: SignatureSource, namespace: str, stable_revision: str, canary_revision: str) -> ContractResult:
    """Compare the canary's signature with stable's (see the module docstring for the rules)."""
    stable = source.series(signature_query(namespace, stable_revision))
    if stable.error is not None:
        return Unknown(f"Prometheus did not answer the signature query: {stable.error}")
    stable_sig = signature_from_series(stable.labels)
    canary = source.series(signature_query(namespace, canary_revision))
    if canary.error is not None:
        return Unknown(f"Prometheus did not answer the signature query: {canary.error}")
    canary_sig = signature_from_series(canary.labels)
    if stable_sig.empty:
        return _without_stable_signature(source, namespace, stable_revision, canary_sig)
    if canary_sig.empty:
        return Unknown(f"no {METRIC} from canary {canary_revision} yet (its pods have not been scraped)")
    if stable_sig.conflicts or canary_sig.conflicts:
        return Unknown("conflicting signatures reported: " + "; ".join(stable_sig.conflicts + canary_sig.conflicts))
    differences = compare(stable_sig, canary_sig)
    return Incompatible(tuple(differences)) if differences else Compatible()


def scraped_query(namespace: str, revision: str) -> str:
    """Any sign that Prometheus scrapes the revision's model servers (a metric every version has)."""
    return f'max by (revision) ({READY_METRIC}{{namespace="{namespace}", revision="{revision}"}})'


def _without_stable_signature(
    source: SignatureSource, namespace: str, stable_revision: str, canary_sig: Signature
) -> ContractResult:
    """Stable exports no signature: a server older than the metric (skip the check, say so), or a
    stable Prometheus has not scraped yet, which must not read as the former.

    Told apart by ``modelserver_ready``: a scraped stable has it. Not scraped while the canary's
    signature is there means Prometheus does scrape model servers and has not reached stable's
    pods yet (restarted pods, a new target): Unknown, and the engine waits (bounded by
    ``progressDeadlineSeconds``). Neither scraped: this Prometheus does not scrape model servers at
    all (gates on other metrics only), and nothing can be compared.
    """
    ready = source.series(scraped_query(namespace, stable_revision))
    if ready.error is not None:
        return Unknown(f"Prometheus did not answer the signature query: {ready.error}")
    if ready.labels:
        return Compatible(
            note=f"stable revision {stable_revision} exports no {METRIC} (a model server without it?); "
            "signatures not compared"
        )
    if not canary_sig.empty:
        return Unknown(f"stable revision {stable_revision} not scraped by Prometheus yet ({READY_METRIC} absent)")
    return Compatible(
        note=f"neither revision's model servers are scraped by this Prometheus ({METRIC} and {READY_METRIC} "
        "absent); signatures not compared"
    )


class PrometheusSignatures(PrometheusProvider):
    """:class:`PrometheusProvider` plus :meth:`series`, with the same timeouts and circuit breaker."""

    def series(self, promql: str) -> SeriesResult:
        data, error = self.call(promql)
        if error is not None:
            return SeriesResult(error=error)
        if not isinstance(data, list) or not all(isinstance(s, dict) for s in data):
            return SeriesResult(error=f"unexpected answer from {self.address}: {str(data)[:200]}")
        return SeriesResult(tuple({str(k): str(v) for k, v in (s.get("metric") or {}).items()} for s in data))


def observe(
    connection: PrometheusConnection | CredentialsError, namespace: str, stable: str, canary: str
) -> ContractResult:
    """:func:`check` against the Prometheus ``connection`` describes (blocking: call it off the event
    loop); credentials that could not be read leave the signatures unknown, with the reason."""
    if isinstance(connection, CredentialsError):
        return Unknown(f"Prometheus credentials: {connection}")
    with PrometheusSignatures(connection) as source:
        return check(source, namespace, stable, canary)
