"""Deterministic fault injection for tests: a process kills itself at a named point, never at a random moment.

Off unless the environment variable ``SEQVISION_FAULT`` is set (tests set it for a subprocess), so in normal use
:func:`fault_point` is one dictionary lookup. The value is one or more rules separated by ``;``::

    <action>:<phase>=<pattern>[#<n>]

- ``action``: ``kill`` (SIGKILL this process: no cleanup, no ``finally``, like a power cut or the OOM killer) or
  ``raise`` (raise :class:`InjectedFault`, for in-process tests).
- ``phase``: the kind of point, as the code names it. Points in the package today:

  ============  =================================================  ===========================================
  phase         where                                              value
  ============  =================================================  ===========================================
  ``step``      the trainer, after each optimizer step             the global step (1, 2, ...)
  ``epoch``     the trainer, after an epoch's metrics, before      the epoch (1, 2, ...)
                its saves
  ``save``      the trainer, around the checkpoint saves           ``before_best``, ``after_best``,
                                                                   ``after_last``
  ``write``     every atomic file write (``seqvision._fileio``),   the target's file name (``last.pt``,
                after the temporary file is complete and fsynced,  ``<key>.json``, ...)
                before it is renamed over the target
  ============  =================================================  ===========================================

- ``pattern``: matched against the point's value with :func:`fnmatch.fnmatchcase` (``7``, ``after_best``,
  ``*.json``).
- ``#n``: fire on the n-th matching hit in this process only (default: the first).

Examples: ``kill:step=7``, ``kill:save=after_best``, ``kill:write=last.pt#2`` (mid-write of the second
``last.pt``), ``kill:write=*.npy#5;raise:epoch=3``. Hits are counted per process in the order the points are
reached; points reached from several threads (the feature cache's writer threads) are counted in the order the
threads get there.
"""

from __future__ import annotations

import fnmatch
import os
import signal

__all__ = ["ENV", "InjectedFault", "fault_point", "parse_rules"]

ENV = "SEQVISION_FAULT"
_ACTIONS = ("kill", "raise")


class InjectedFault(RuntimeError):
    """Raised by a ``raise:`` rule of ``SEQVISION_FAULT`` at its point (tests only)."""


class _Rule:
    __slots__ = ("action", "phase", "pattern", "nth", "hits")

    def __init__(self, action: str, phase: str, pattern: str, nth: int):
        self.action, self.phase, self.pattern, self.nth, self.hits = action, phase, pattern, nth, 0


def parse_rules(spec: str) -> list[_Rule]:
    """Parse a ``SEQVISION_FAULT`` value (see the module docstring).

    Raises:
        ValueError: naming the rule that is malformed, so a typo in a test never silently disables its fault.
    """
    rules = []
    for text in filter(None, (part.strip() for part in spec.split(";"))):
        action, sep, rest = text.partition(":")
        phase, eq, pattern = rest.partition("=")
        nth = 1
        if "#" in pattern:
            pattern, _, count = pattern.rpartition("#")
            nth = int(count) if count.isdigit() and int(count) > 0 else 0
        if action not in _ACTIONS or not sep or not eq or not phase or not pattern or nth < 1:
            raise ValueError(f"{ENV}: bad rule {text!r}; expected '<kill|raise>:<phase>=<pattern>[#<n>]'")
        rules.append(_Rule(action, phase.strip(), pattern.strip(), nth))
    return rules


_cache: tuple[str, list[_Rule]] = ("", [])


def fault_point(phase: str, value: object = None) -> None:
    """Mark a point where a test may inject a fault; does nothing unless ``SEQVISION_FAULT`` names it.

    Args:
        phase: the kind of point (``"step"``, ``"save"``, ``"write"``, ...; see the module docstring).
        value: this hit's value (a step number, a save phase, a file name), matched by the rule's pattern.

    Raises:
        InjectedFault: when a ``raise:`` rule fires. A ``kill:`` rule ends the process with SIGKILL.
        ValueError: the environment variable is malformed.
    """
    global _cache
    spec = os.environ.get(ENV)
    if not spec:
        return
    if spec != _cache[0]:
        _cache = (spec, parse_rules(spec))
    for rule in _cache[1]:
        if rule.phase != phase or not fnmatch.fnmatchcase(str(value), rule.pattern):
            continue
        rule.hits += 1
        if rule.hits != rule.nth:
            continue
        if rule.action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise InjectedFault(f"{ENV}: injected fault at {phase}={value} (hit {rule.nth})")
