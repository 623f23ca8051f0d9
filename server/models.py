"""The shared database proxy and the base of every model.

Each domain keeps its own rows beside its services (``server/repositories/
models.py``, ``server/imports/models.py``, ``server/users/models.py``,
``server/devices/models.py`` ...).  Peewee models never leave the ``server``
package: services turn them into dataclasses at the boundary, and
``appliance/`` calls services only (``tests/unit/test_layers.py``)."""

from collections.abc import Iterator
from typing import Any

from peewee import BaseQuery, DatabaseProxy, Model

database = DatabaseProxy()


def tuples(query: BaseQuery) -> Iterator[tuple[Any, ...]]:
    """The rows of ``query`` as plain tuples (``query.tuples()``), typed as
    such: peewee's stubs say a model query yields model instances even then."""
    return iter(query.tuples())


class BaseModel(Model):
    class Meta:
        database = database
