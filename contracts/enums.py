"""Protobuf enums of the contract. Member order is the proto number order (0, 1, 2, …)."""

import enum


class ImageStatus(enum.Enum):
    STATUS_UNSPECIFIED = "STATUS_UNSPECIFIED"
    CREATING = "CREATING"
    READY = "READY"
    ERROR = "ERROR"
    DELETING = "DELETING"


class OsType(enum.Enum):
    TYPE_UNSPECIFIED = "TYPE_UNSPECIFIED"
    LINUX = "LINUX"
    WINDOWS = "WINDOWS"


class PciTopology(enum.Enum):
    PCI_TOPOLOGY_UNSPECIFIED = "PCI_TOPOLOGY_UNSPECIFIED"
    PCI_TOPOLOGY_V1 = "PCI_TOPOLOGY_V1"
    PCI_TOPOLOGY_V2 = "PCI_TOPOLOGY_V2"


class AccessBindingAction(enum.Enum):
    ACCESS_BINDING_ACTION_UNSPECIFIED = "ACCESS_BINDING_ACTION_UNSPECIFIED"
    ADD = "ADD"
    REMOVE = "REMOVE"


def enum_by_number(enum_type: type[enum.Enum], number: int) -> enum.Enum | None:
    """The member with this proto number, as proto3 JSON parsers accept numbers for enums."""
    members = list(enum_type)
    return members[number] if 0 <= number < len(members) else None
