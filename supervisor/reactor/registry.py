"""The engine's containers, found by full ID, unique ID prefix or name."""

from __future__ import annotations

from collections.abc import Iterator

from supervisor.errors import Conflict, InvalidArgument, NotFound
from supervisor.reactor.broadcast import Broadcast
from supervisor.reactor.container import Container


class Registry:
    def __init__(self) -> None:
        self._by_id: dict[str, Container] = {}
        self._by_name: dict[str, str] = {}
        # Notified when a container comes or goes, and (through each container) on every transition.
        self.changed = Broadcast()

    def __iter__(self) -> Iterator[Container]:
        return iter(list(self._by_id.values()))

    def __len__(self) -> int:
        return len(self._by_id)

    def names(self) -> set[str]:
        return set(self._by_name)

    def reserve_name(self, name: str, container_id: str) -> None:
        holder = self._by_name.get(name)
        if holder is not None and holder != container_id:
            raise Conflict(
                f'Conflict. The container name "/{name}" is already in use by container "{holder}". '
                "You have to remove (or rename) that container to be able to reuse that name."
            )
        self._by_name[name] = container_id

    def release_name(self, name: str) -> None:
        self._by_name.pop(name, None)

    def add(self, container: Container) -> None:
        self._by_id[container.id] = container
        self._by_name[container.name] = container.id
        self.changed.notify()

    def discard(self, container: Container) -> None:
        self._by_id.pop(container.id, None)
        if self._by_name.get(container.name) == container.id:
            del self._by_name[container.name]
        self.changed.notify()

    def by_name(self, name: str) -> Container | None:
        container_id = self._by_name.get(name)
        return self._by_id.get(container_id) if container_id else None

    def find(self, container_id: str) -> Container | None:
        return self._by_id.get(container_id)

    def get(self, ref: str) -> Container:
        """Docker's order: full ID, then exact name, then a unique ID prefix."""
        ref = ref.lstrip("/")
        if ref in self._by_id:
            return self._by_id[ref]
        if ref in self._by_name and self._by_name[ref] in self._by_id:
            return self._by_id[self._by_name[ref]]
        if ref:
            matches = [c for cid, c in self._by_id.items() if cid.startswith(ref)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise InvalidArgument(f"Multiple IDs found with provided prefix: {ref}")
        raise NotFound(f"No such container: {ref}")
