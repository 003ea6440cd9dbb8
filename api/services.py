"""What the API's write methods run on, which their adapter builds once: the store, the
settings, and the group commits of creates and updates."""

from typing import NamedTuple

from api.create_batches import PendingCreate
from api.group_commit import GroupCommit
from api.settings import GatewaySettings
from api.update_batches import PendingUpdate
from store.db import Database


class Services(NamedTuple):
    db: Database
    settings: GatewaySettings
    creates: GroupCommit[PendingCreate]
    updates: GroupCommit[PendingUpdate]
