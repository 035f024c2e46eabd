"""The dependency graph across all loaded containers: what is missing, what loops, what starts when.

Pure functions over names. A container whose dependency is missing or
excluded, or that sits on a cycle, is excluded — and so, in turn, is
everything that depends on it: starting a container whose dependency
will never come would only make it wait forever.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from supervisor.reactor.config.model import ContainerConfig, Dependency


@dataclass(frozen=True)
class GraphProblem:
    """`container`'s dependency on `dependency` cannot be met, because `message`."""

    container: str
    dependency: str
    message: str


@dataclass(frozen=True)
class StartStep:
    container: ContainerConfig
    waits_for: tuple[Dependency, ...]  # each to reach its condition before this one starts


def check_graph(
    containers: Iterable[ContainerConfig], unavailable: Mapping[str, str] | None = None
) -> tuple[frozenset[str], tuple[GraphProblem, ...]]:
    """(names to exclude, why); `unavailable` explains names that are declared but not loaded."""
    deps = {c.name: [d.name for d in c.depends_on] for c in containers}
    problems: list[GraphProblem] = []
    excluded: set[str] = set()
    for name in sorted(deps):
        for dep in deps[name]:
            if dep not in deps:
                reason = (unavailable or {}).get(dep, "which no config defines")
                problems.append(GraphProblem(name, dep, f'depends on "{dep}", {reason}'))
                excluded.add(name)
    for component in _cycles(deps):
        for name in sorted(component):
            cycle = _cycle_through(name, deps, component)
            problems.append(GraphProblem(name, cycle[1], "dependency cycle: " + " -> ".join(cycle)))
            excluded.add(name)
    # Whatever waits on an excluded container is excluded too, transitively.
    changed = True
    while changed:
        changed = False
        for name in sorted(deps):
            if name in excluded:
                continue
            blocked = sorted(dep for dep in deps[name] if dep in excluded)
            if blocked:
                problems.append(GraphProblem(name, blocked[0], f'depends on "{blocked[0]}", which is not loaded'))
                excluded.add(name)
                changed = True
    return frozenset(excluded), tuple(problems)


def start_order(containers: Iterable[ContainerConfig]) -> tuple[StartStep, ...]:
    """Every container after what it depends on; among the ready ones, by name.

    Dependencies outside `containers` are ignored (they are not ours to
    order); a cycle is a bug in the caller, who should have run `check_graph`.
    """
    by_name = {c.name: c for c in containers}
    waiting = {name: {d.name for d in c.depends_on if d.name in by_name} for name, c in by_name.items()}
    dependents: dict[str, list[str]] = {name: [] for name in by_name}
    for name, deps in waiting.items():
        for dep in deps:
            dependents[dep].append(name)
    ready = [name for name, deps in waiting.items() if not deps]
    heapq.heapify(ready)
    order: list[StartStep] = []
    while ready:
        name = heapq.heappop(ready)
        config = by_name[name]
        order.append(StartStep(config, tuple(d for d in config.depends_on if d.name in by_name)))
        for dependent in dependents[name]:
            waiting[dependent].discard(name)
            if not waiting[dependent]:
                heapq.heappush(ready, dependent)
    if len(order) != len(by_name):
        stuck = sorted(set(by_name) - {step.container.name for step in order})
        raise ValueError(f"dependency cycle among {stuck}")
    return tuple(order)


def _cycles(deps: Mapping[str, list[str]]) -> list[frozenset[str]]:
    """Strongly connected components with more than one member (Tarjan's, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    counter = 0
    for root in sorted(deps):
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            edges = [d for d in deps[node] if d in deps]
            if child < len(edges):
                work.append((node, child + 1))
                nxt = edges[child]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return found


def _cycle_through(start: str, deps: Mapping[str, list[str]], component: frozenset[str]) -> list[str]:
    """The shortest cycle start -> ... -> start inside `component` (breadth first, names sorted)."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for dep in sorted(deps[node]):
                if dep == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if dep in component and dep not in previous:
                    previous[dep] = node
                    following.append(dep)
        frontier = following
    raise ValueError(f"{start} is on no cycle")  # a strongly connected component always has one
