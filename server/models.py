"""The shared database proxy and the base of every model.

Each domain keeps its own rows beside its services (``server/repositories/
models.py``, ``server/imports/models.py``, ``server/users/models.py``,
``server/devices/models.py`` ...).  Peewee models never leave the ``server``
package: services turn them into dataclasses at the boundary, and
``appliance/`` calls services only (``tests/unit/test_layers.py``)."""

from peewee import DatabaseProxy, Model

database = DatabaseProxy()


class BaseModel(Model):
    class Meta:
        database = database
