"""Datablocks made by one import, removed again if the import fails half way."""
from __future__ import annotations


class Created:
    def __init__(self):
        self.items = []

    def add(self, coll, idb):
        self.items.append((coll, idb))
        return idb

    def rollback(self):
        for coll, idb in reversed(self.items):
            try:
                coll.remove(idb)
            except (ReferenceError, RuntimeError):
                pass
