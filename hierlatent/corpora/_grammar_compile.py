"""Compile and check an NLTK PCFG file: integer rule tables for the sampler, and one-line errors naming the line.

Checks (each a ``GrammarError`` naming the file and line): syntax, probabilities of a left-hand side not
summing to 1, undefined nonterminals, unreachable nonterminals, terminals with whitespace, lexical latent
categories, and an infinite expected sentence length (spectral radius of the expected-offspring matrix >= 1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from nltk.grammar import Nonterminal, read_grammar, standard_nonterm_parser

from hierlatent.errors import GrammarError


@dataclass
class CompiledGrammar:
    """Integer tables: nonterminal n's rules are ``rule_start[n]:rule_start[n+1]``; rhs symbols are terminal
    ids (>= 0) or ``-(n+1)`` for nonterminal n; ``rule_cdf`` is cumulative within each left-hand side."""

    nonterminals: list[str]
    terminals: list[str]
    rule_start: np.ndarray
    rule_prob: np.ndarray
    rule_cdf: np.ndarray
    rhs_start: np.ndarray
    rhs: np.ndarray
    offspring: np.ndarray  # [N, N] expected count of nonterminal j in one expansion of i
    direct_terminals: np.ndarray  # [N] expected terminals emitted directly by one expansion of i


def compile_grammar(path: Path, latent_categories: list[str]) -> CompiledGrammar:
    """Parse, check and compile ``path``; ``latent_categories`` must be lexical nonterminals."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise GrammarError(f"grammar_file: cannot read {path} ({exc.strerror})") from exc
    try:
        start, prods = read_grammar(text, standard_nonterm_parser, probabilistic=True)
    except ValueError as exc:
        raise GrammarError(f"{path}: {' '.join(str(exc).split())}") from exc
    lines = _Lines(path, text)
    if not prods:
        raise GrammarError(f"{path}: no rules")
    lhs_order = list(dict.fromkeys(p.lhs() for p in prods))
    nts = [start] + [n for n in lhs_order if n != start]
    index = {n: i for i, n in enumerate(nts)}
    for p in prods:
        for sym in p.rhs():
            if isinstance(sym, Nonterminal) and sym not in index:
                raise GrammarError(f"{lines.use(sym)}: nonterminal {sym} is used but never defined")
            if isinstance(sym, str) and (not sym or re.search(r"\s", sym)):
                raise GrammarError(f"{lines.use(sym)}: terminal {sym!r} is empty or contains whitespace")
    by_lhs = {n: [p for p in prods if p.lhs() == n] for n in nts}
    for n, rules in by_lhs.items():
        total = sum(p.prob() for p in rules)
        if abs(total - 1.0) > 1e-6:
            raise GrammarError(f"{lines.lhs(n)}: probabilities of the rules for {n} sum to {total:.6g}, not 1")
    _check_reachable(nts, by_lhs, lines)
    for cat in latent_categories:
        n = Nonterminal(cat)
        if n not in index:
            raise GrammarError(f"latent_categories: {cat} is not a nonterminal of {path}")
        if any(len(p.rhs()) != 1 or isinstance(p.rhs()[0], Nonterminal) for p in by_lhs[n]):
            raise GrammarError(f"{lines.lhs(n)}: latent category {cat} must be lexical (every rule one terminal)")
    compiled = _tables(nts, index, by_lhs)
    radius = max(abs(np.linalg.eigvals(compiled.offspring))) if len(nts) else 0.0
    if radius >= 1 - 1e-9:
        recursive = [nts[i].symbol() for i in range(len(nts)) if compiled.offspring[i, i] > 0] or [nts[0].symbol()]
        raise GrammarError(
            f"{lines.lhs(Nonterminal(recursive[0]))}: expected sentence length is infinite (recursion through "
            f"{', '.join(recursive)} expands faster than it ends: spectral radius {radius:.3f} >= 1)"
        )
    return compiled


def _tables(nts, index, by_lhs) -> CompiledGrammar:
    terminals: dict[str, int] = {}
    rule_start, probs, rhs_start, rhs = [0], [], [0], []
    n = len(nts)
    offspring, direct = np.zeros((n, n)), np.zeros(n)
    for i, nt in enumerate(nts):
        for p in by_lhs[nt]:
            probs.append(p.prob())
            for sym in p.rhs():
                if isinstance(sym, Nonterminal):
                    rhs.append(-(index[sym] + 1))
                    offspring[i, index[sym]] += p.prob()
                else:
                    rhs.append(terminals.setdefault(sym, len(terminals)))
                    direct[i] += p.prob()
            rhs_start.append(len(rhs))
        rule_start.append(len(probs))
    prob = np.array(probs)
    cdf = np.concatenate([np.cumsum(prob[a:b]) for a, b in zip(rule_start[:-1], rule_start[1:])])
    cdf[np.array(rule_start[1:]) - 1] = 1.0  # the last rule of each lhs closes its CDF exactly
    return CompiledGrammar(
        [nt.symbol() for nt in nts], list(terminals), np.array(rule_start), prob, cdf,
        np.array(rhs_start), np.array(rhs, dtype=np.int64), offspring, direct,
    )


def _check_reachable(nts, by_lhs, lines) -> None:
    seen, todo = {nts[0]}, [nts[0]]
    while todo:
        for p in by_lhs[todo.pop()]:
            for sym in p.rhs():
                if isinstance(sym, Nonterminal) and sym not in seen:
                    seen.add(sym)
                    todo.append(sym)
    for n in nts:
        if n not in seen:
            raise GrammarError(f"{lines.lhs(n)}: nonterminal {n} is unreachable from the start symbol {nts[0]}")


class _Lines:
    """Finds the line of a rule or of a symbol's first use, for error messages ``<file>:<line>``."""

    def __init__(self, path: Path, text: str):
        self.path = path
        self.lines = text.splitlines()

    def lhs(self, nt: Nonterminal) -> str:
        pattern = re.compile(rf"^\s*{re.escape(nt.symbol())}\s*->")
        return self._find(pattern, lambda line: line)

    def use(self, sym) -> str:
        if isinstance(sym, Nonterminal):
            pattern = re.compile(rf"->.*(?<![\w']){re.escape(sym.symbol())}(?![\w'])")
            return self._find(pattern, lambda line: re.sub(r"'[^']*'|\"[^\"]*\"", "''", line))
        return self._find(re.compile(re.escape(repr(sym)[1:-1])), lambda line: line)

    def _find(self, pattern, clean) -> str:
        for i, line in enumerate(self.lines, 1):
            if pattern.search(clean(line.split("#")[0] if "#" in line and "'" not in line else line)):
                return f"{self.path}:{i}"
        return str(self.path)
