"""Rows of the users domain."""

from peewee import AutoField, TextField

from server.models import BaseModel


class User(BaseModel):
    id = AutoField()
    username = TextField(unique=True)
    password_hash = TextField()  # scrypt, see server.auth.hash_password
    role = TextField(default="admin")  # admin | operator | auditor
    created_at = TextField()

    class Meta:
        table_name = "user"
